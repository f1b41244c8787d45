//! What to pull: an `rtsp://` URL (credentials and all, as users paste them from their camera's
//! manual) and the RTP transport.
//!
//! The URL is split once, here: retina gets the URL without its userinfo (so nothing it logs or puts
//! in an error message can carry the password) and the credentials separately, which it only uses
//! when the camera answers `401` with a `WWW-Authenticate` challenge (RFC 2326 §D.1, digest or basic).

use super::RtspError;
use std::fmt;
use std::str::FromStr;
use url::Url;

/// How RTP packets travel from the camera.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved on the RTSP TCP connection (RFC 2326 §10.12). Works through NAT and firewalls
    /// and loses nothing, so it is the default.
    #[default]
    Tcp,
    /// Separate RTP/RTCP UDP ports. Lower latency on a LAN; retina has no reorder buffer, so
    /// reordered packets count as loss.
    Udp,
}

impl RtspTransport {
    /// `"tcp"` or `"udp"`, as the HTTP API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }
}

impl fmt::Display for RtspTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RtspTransport {
    type Err = RtspError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            _ => Err(RtspError::BadTransport {
                transport: s.chars().take(16).collect(),
            }),
        }
    }
}

/// A camera to pull from. Build it with [`RtspSource::parse`], which validates the URL.
///
/// `Debug` and [`RtspSource::redacted_url`] never show the password; only `url` itself does, so
/// the server may store it but must not return it from the API.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspSource {
    /// `rtsp://[user[:pass]@]host[:port]/path[?query]`, as given (credentials percent-encoded).
    pub url: String,
    pub transport: RtspTransport,
}

/// Username and password taken out of the URL's userinfo, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Creds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Creds")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl RtspSource {
    /// Validates `url` (scheme `rtsp`, a host, a port that fits, no fragment) and keeps it.
    pub fn parse(url: &str, transport: RtspTransport) -> Result<RtspSource, RtspError> {
        split_url(url)?;
        Ok(RtspSource {
            url: url.trim().to_string(),
            transport,
        })
    }

    /// The URL with the password replaced by `***` (the username stays: it helps to tell which
    /// account a `401` was for). For logs and `GET /api/streams/:id`.
    pub fn redacted_url(&self) -> String {
        match Url::parse(self.url.trim()) {
            Ok(mut u) => {
                if u.password().is_some() {
                    // Infallible for URLs with a host, which `parse` guaranteed.
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            // Not from `parse`: show nothing that could be a secret.
            Err(_) => "rtsp://(invalid url)".to_string(),
        }
    }

    /// Whether the URL carries a username (the camera then gets digest or basic credentials).
    pub fn has_credentials(&self) -> bool {
        matches!(split_url(&self.url), Ok((_, Some(_))))
    }

    /// The URL retina connects to (no userinfo) and the credentials, if any.
    pub(crate) fn split(&self) -> Result<(Url, Option<Creds>), RtspError> {
        split_url(&self.url)
    }
}

impl fmt::Debug for RtspSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtspSource")
            .field("url", &self.redacted_url())
            .field("transport", &self.transport)
            .finish()
    }
}

/// Splits and checks; the single place URL rules live.
fn split_url(raw: &str) -> Result<(Url, Option<Creds>), RtspError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(RtspError::InvalidUrl {
            reason: "empty URL".into(),
        });
    }
    let mut url = Url::parse(raw).map_err(|e| RtspError::InvalidUrl {
        // url's messages name the problem ("invalid port number"), never echo the input.
        reason: e.to_string(),
    })?;
    if url.scheme() != "rtsp" {
        return Err(RtspError::InvalidUrl {
            reason: format!(
                "scheme {:?} is not supported; use rtsp:// (rtsps and http tunnelling are not)",
                url.scheme()
            ),
        });
    }
    match url.host_str() {
        None | Some("") => {
            return Err(RtspError::InvalidUrl {
                reason: "no host".into(),
            })
        }
        Some(_) => {}
    }
    if url.port() == Some(0) {
        return Err(RtspError::InvalidUrl {
            reason: "port 0".into(),
        });
    }
    if url.fragment().is_some() {
        return Err(RtspError::InvalidUrl {
            reason: "a fragment (#…) has no meaning in an RTSP URL".into(),
        });
    }
    let creds = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let username = decode(url.username(), "username")?;
        let password = decode(url.password().unwrap_or(""), "password")?;
        if username.is_empty() {
            return Err(RtspError::InvalidUrl {
                reason: "a password without a username".into(),
            });
        }
        // Infallible for URLs with a host (checked above); ignore the unit errors.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some(Creds { username, password })
    };
    Ok((url, creds))
}

fn decode(s: &str, what: &'static str) -> Result<String, RtspError> {
    String::from_utf8(percent_decode(s)).map_err(|_| RtspError::InvalidUrl {
        reason: format!("the {what} is not UTF-8 once percent-decoded"),
    })
}

/// RFC 3986 §2.1 percent-decoding; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|x| (*x as char).to_digit(16)),
                b.get(i + 2).and_then(|x| (*x as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_credentials_out_of_the_url() {
        let s = RtspSource::parse(
            "rtsp://admin:p%40ss%3Aw0rd@192.0.2.7:8554/Streaming/Channels/101?transportmode=unicast",
            RtspTransport::Tcp,
        )
        .unwrap();
        let (url, creds) = s.split().unwrap();
        assert_eq!(
            url.as_str(),
            "rtsp://192.0.2.7:8554/Streaming/Channels/101?transportmode=unicast"
        );
        let creds = creds.unwrap();
        assert_eq!(creds.username, "admin");
        assert_eq!(creds.password, "p@ss:w0rd");
        assert!(s.has_credentials());
    }

    #[test]
    fn debug_and_redacted_url_hide_the_password() {
        let s =
            RtspSource::parse("rtsp://admin:hunter2@cam.local/live", RtspTransport::Udp).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("admin:***@cam.local"), "{dbg}");
        assert!(dbg.contains("Udp"), "{dbg}");
        assert_eq!(s.redacted_url(), "rtsp://admin:***@cam.local/live");
        let (_, creds) = s.split().unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
    }

    #[test]
    fn no_credentials() {
        let s = RtspSource::parse("  rtsp://127.0.0.1:554/test  ", RtspTransport::Tcp).unwrap();
        assert_eq!(s.url, "rtsp://127.0.0.1:554/test");
        let (url, creds) = s.split().unwrap();
        assert!(creds.is_none());
        assert_eq!(url.port(), Some(554));
        assert!(!s.has_credentials());
        assert_eq!(s.redacted_url(), "rtsp://127.0.0.1:554/test");
    }

    #[test]
    fn rejects_bad_urls_without_echoing_them() {
        for bad in [
            "",
            "not a url",
            "http://cam/live",
            "rtsps://cam/live",
            "rtsp://",
            "rtsp://cam:99999/live",
            "rtsp://cam:0/live",
            "rtsp://:secret@cam/live",
            "rtsp://cam/live#frag",
            "rtsp://u:%ff%fe@cam/live",
        ] {
            let e = RtspSource::parse(bad, RtspTransport::Tcp).unwrap_err();
            assert!(matches!(e, RtspError::InvalidUrl { .. }), "{bad}: {e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    proptest::proptest! {
        /// Any string: no panic; and whatever the password, once accepted it never shows in
        /// `Debug`, `redacted_url` or an error message, and comes back intact from `split`.
        #[test]
        fn password_never_leaks(
            junk in ".{0,80}",
            user in "[a-zA-Z0-9._~-]{1,12}",
            pass in "[a-zA-Z0-9]{6,16}",
            host in "[a-z]{1,10}(\\.[a-z]{1,5})?",
            path in "(/[a-zA-Z0-9_.-]{0,8}){0,3}",
        ) {
            let _ = RtspSource::parse(&junk, RtspTransport::Tcp).map(|s| s.redacted_url());
            let url = format!("rtsp://{user}:{pass}@{host}:554{path}");
            let s = RtspSource::parse(&url, RtspTransport::Tcp).unwrap();
            let redacted = s.redacted_url();
            proptest::prop_assume!(!user.contains(&pass) && !host.contains(&pass) && !path.contains(&pass));
            proptest::prop_assert!(!redacted.contains(&pass), "{}", redacted);
            let shown = format!("{:?}", s);
            proptest::prop_assert!(!shown.contains(&pass));
            let (u, creds) = s.split().unwrap();
            proptest::prop_assert!(!u.as_str().contains(&pass));
            let creds = creds.unwrap();
            proptest::prop_assert_eq!(creds.username, user);
            proptest::prop_assert_eq!(creds.password, pass);
        }
    }

    #[test]
    fn transport_from_str() {
        assert_eq!("tcp".parse::<RtspTransport>().unwrap(), RtspTransport::Tcp);
        assert_eq!("UDP".parse::<RtspTransport>().unwrap(), RtspTransport::Udp);
        assert!(matches!(
            "http".parse::<RtspTransport>(),
            Err(RtspError::BadTransport { .. })
        ));
        assert_eq!(
            serde_json::to_string(&RtspTransport::Udp).unwrap(),
            "\"udp\""
        );
    }
}
