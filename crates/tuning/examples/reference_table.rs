//! Prints the reference table in docs/configuration.md: every profile's
//! recommendation for a few sizes, as Markdown. `cargo run -p tuning --example reference_table`.

use tuning::units::format_duration;
use tuning::{Profile, Resources, recommend};

fn main() {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let sizes = [
        Resources::new(1, 512 * MIB),
        Resources::from_millis(1500, 2 * GIB),
        Resources::new(2, 4 * GIB),
        Resources::new(4, 8 * GIB),
        Resources::new(8, 16 * GIB),
        Resources::new(12, 24 * GIB),
        Resources::new(16, 32 * GIB),
        Resources::new(48, 96 * GIB),
        Resources::new(96, 192 * GIB),
    ];
    for profile in Profile::ALL {
        println!("\n**{profile}**\n");
        println!(
            "| resources | threads | workers | connection_limit | cleanup_interval | channel_timeout | recv/send | backlog |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for r in sizes {
            let s = recommend(&r, profile).settings();
            println!(
                "| {r} | {} | {} | {} | {} | {} | {} | {} |",
                s.threads,
                s.workers,
                s.connection_limit,
                format_duration(s.cleanup_interval),
                format_duration(s.channel_timeout),
                s.recv_bytes,
                s.backlog
            );
        }
    }
}
