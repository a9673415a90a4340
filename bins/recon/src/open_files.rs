//! The open-file limit a server needs: a descriptor per connection, and room
//! for the data directory's files beside them.
//!
//! Many hosts start processes with a soft limit of 1024 descriptors (a hard
//! limit far above it), below what `connection_limit` is tuned to from 8
//! vCPUs up. Past the limit `accept` fails and a job cannot open its files,
//! so `recon serve` raises its soft limit as far as it needs (never past the
//! hard limit, which only the administrator can raise) and says so when even
//! that is short.

use std::io;

/// Descriptors kept for other than connections: the listener, the data
/// directory's files (uploads being written, inputs and results a job reads
/// and writes, leases), the runtime's own and the log.
pub(crate) const RESERVED: u64 = 256;

/// What [`ensure`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFiles {
    /// The soft limit already allowed `needed`.
    Enough { soft: u64 },
    /// The soft limit was raised to `to`, which allows `needed`.
    Raised { from: u64, to: u64 },
    /// Even the hard limit is below `needed`: the soft limit is now `limit`
    /// (raised to the hard limit when it was lower).
    Short { limit: u64, needed: u64 },
}

/// Makes the soft open-file limit at least `needed` where the hard limit
/// allows, else as high as it allows.
///
/// # Errors
/// The system's, when the limit cannot be read or set.
#[cfg(target_os = "linux")]
pub(crate) fn ensure(needed: u64) -> io::Result<OpenFiles> {
    // `rlim_t` is `u64` here and `RLIM_INFINITY` its largest value, so the
    // limits compare as plain numbers.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the call to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let soft = limit.rlim_cur;
    if soft >= needed {
        return Ok(OpenFiles::Enough { soft });
    }
    let to = needed.min(limit.rlim_max);
    limit.rlim_cur = to;
    // SAFETY: `limit` is a valid `rlimit`; its soft value is at most the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        // A hard limit above `fs.nr_open` (lowered since it was set) is
        // refused even unchanged: ask for `to` as both limits instead (a
        // process may always lower its own hard limit).
        limit.rlim_max = to;
        // SAFETY: as above; both values are `to`.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(if to >= needed {
        OpenFiles::Raised { from: soft, to }
    } else {
        OpenFiles::Short { limit: to, needed }
    })
}

/// Elsewhere the limit is left to the system.
#[cfg(not(target_os = "linux"))]
pub(crate) fn ensure(needed: u64) -> io::Result<OpenFiles> {
    Ok(OpenFiles::Enough { soft: needed })
}

/// Logs what [`ensure`] did for `connection_limit` connections.
pub(crate) fn ensure_for(connection_limit: usize) {
    let connections = u64::try_from(connection_limit).unwrap_or(u64::MAX);
    let needed = connections.saturating_add(RESERVED);
    match ensure(needed) {
        Ok(OpenFiles::Enough { .. }) => {}
        Ok(OpenFiles::Raised { from, to }) => tracing::info!(
            from,
            to,
            connection_limit,
            "raised the open-file limit: one descriptor a connection plus {RESERVED} for files"
        ),
        Ok(OpenFiles::Short { limit, needed }) => tracing::warn!(
            limit,
            needed,
            connection_limit,
            "the open-file limit's hard cap is below connection_limit plus {RESERVED} for files: \
             clients past it fail to connect and jobs may fail to open their files; raise the \
             hard limit (ulimit -Hn as root, systemd LimitNOFILE=, docker run --ulimit \
             nofile=N:N, Compose ulimits: nofile:) or lower connection_limit"
        ),
        Err(error) => tracing::warn!(%error, "could not read or raise the open-file limit"),
    }
}
