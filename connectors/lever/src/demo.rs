//! Demo mode (`demo = true`, `sluice run --demo`): the source starts the built-in Lever
//! emulator in-process and syncs its demo data.

use sluice_core::{Error, Result, Secret};
use sluice_lever_emulator::{Emulator, EmulatorConfig, ServerHandle};

/// A running in-process emulator (stopped when dropped).
pub(crate) struct Demo {
    _emulator: Emulator,
    _server: ServerHandle,
    pub(crate) base_url: String,
    pub(crate) api_key: Secret,
}

impl Demo {
    /// Starts the emulator with its default demo data and no rate limit.
    pub(crate) async fn start() -> Result<Demo> {
        let emulator = Emulator::new(EmulatorConfig {
            rate_limit: None,
            ..EmulatorConfig::default()
        });
        let server = emulator.start().await.map_err(|e| {
            Error::internal("starting the built-in Lever emulator for demo mode").with_source(e)
        })?;
        Ok(Demo {
            base_url: server.base_url(),
            api_key: Secret::new(emulator.api_key()),
            _emulator: emulator,
            _server: server,
        })
    }
}
