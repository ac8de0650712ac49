//! Which IoT Hub identity (device, or module of a device) an MQTT username stands for.

use anyhow::{Result, bail};

/// A device or module identity, derived from an MQTT username.
///
/// IoT Hub usernames look like `{hub-hostname}/{device-id}/?api-version=...` for devices
/// and `{hub-hostname}/{device-id}/{module-id}/?api-version=...` for modules (Microsoft,
/// "Communicate with an IoT hub using the MQTT protocol"). A username without `/` is taken
/// to be a bare device id, which keeps simple tests simple.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The device id.
    pub device: String,
    /// The module id, for module identities.
    pub module: Option<String>,
}

impl Identity {
    /// Parses a username; fails on ids that would break the topic tree or Mosquitto's files.
    pub fn from_username(username: &str) -> Result<Identity> {
        let identity = if username.contains('/') {
            let mut parts = username.split('/').skip(1);
            let device = parts.next().unwrap_or_default().to_owned();
            let module = parts
                .next()
                .filter(|m| !m.is_empty() && !m.starts_with('?'))
                .map(str::to_owned);
            Identity { device, module }
        } else {
            Identity {
                device: username.to_owned(),
                module: None,
            }
        };
        for id in std::iter::once(&identity.device).chain(&identity.module) {
            // `+`/`#` are MQTT wildcards, and whitespace would split Mosquitto's ACL lines.
            if id.is_empty() || id.contains(['+', '#']) || id.contains(char::is_whitespace) {
                bail!("username {username:?} does not name a usable device/module id");
            }
        }
        Ok(identity)
    }

    /// `device` or `device/module`: the key the emulator files twins under.
    pub fn key(&self) -> String {
        match &self.module {
            Some(module) => format!("{}/{module}", self.device),
            None => self.device.clone(),
        }
    }

    /// The topic prefix this identity's messages live under (`devices/{d}[/modules/{m}]`).
    pub fn topic_prefix(&self) -> String {
        match &self.module {
            Some(module) => format!("devices/{}/modules/{module}", self.device),
            None => format!("devices/{}", self.device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bare_device_and_hub_usernames() {
        let bare = Identity::from_username("dev1").unwrap();
        assert_eq!((bare.device.as_str(), bare.module), ("dev1", None));
        let device = Identity::from_username("hub.example/dev1/?api-version=2021-04-12").unwrap();
        assert_eq!(device.key(), "dev1");
        let module =
            Identity::from_username("hub.example/dev1/mod1/?api-version=2021-04-12").unwrap();
        assert_eq!(module.key(), "dev1/mod1");
        assert_eq!(module.topic_prefix(), "devices/dev1/modules/mod1");
        assert!(Identity::from_username("dev+1").is_err());
        assert!(Identity::from_username("hub//?api-version=1").is_err());
    }
}
