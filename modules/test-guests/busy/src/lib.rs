//! Test guest: spins forever in `on-tick`, so only the host's CPU limit can stop it.

use wedge_sdk::{Config, Module};

struct Busy;

impl Module for Busy {
    fn init(_config: Config) -> Result<Self, String> {
        Ok(Busy)
    }

    fn on_tick(&mut self) -> Result<(), String> {
        let mut counter: u64 = 0;
        loop {
            // `black_box` hides the counter from the optimiser, which could otherwise prove the
            // loop has no effect and reduce it to a bare infinite branch (or worse).
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }
}

wedge_sdk::export!(Busy);
