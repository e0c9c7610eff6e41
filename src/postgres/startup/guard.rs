//! The startup as [`AuthGuard`] follows it, byte by byte (reads and writes may split anything
//! anywhere): whether the client asked for TLS (`SSLRequest`) and the server agreed (`S`), then
//! the server's messages, until `AuthenticationOk`. An `AuthenticationCleartextPassword`
//! request (`R`, code 3) on a connection that did not turn to TLS is refused unless allowed.
//! Pure: no I/O, so every way of splitting the bytes can be tested.

/// What the guard says of the bytes just read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// A cleartext-password request on a connection without TLS: fail the read.
    Refuse,
}

/// `SSLRequest`: length 8, code 80877103 (protocol.sgml, "SSLRequest").
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
/// `GSSENCRequest`: length 8, code 80877104.
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
/// `AuthenticationCleartextPassword`'s code in an `R` message.
const CLEARTEXT: u32 = 3;
/// `AuthenticationOk`'s code.
const OK: u32 = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing written yet.
    Start,
    /// An encryption request was sent: the next byte read is the server's answer.
    AwaitAnswer,
    /// Plain protocol messages, authentication not over yet.
    Messages,
    /// TLS, or authentication over: nothing more to watch.
    Done,
    /// Refused once: refused for good.
    Refused,
}

/// Follows one connection's startup; see the module doc.
#[derive(Debug)]
pub struct AuthGuard {
    allow_cleartext: bool,
    state: State,
    /// The first 8 bytes the client wrote.
    first_write: Vec<u8>,
    /// The current message's type and length, while they are read.
    header: Vec<u8>,
    /// Bytes of the current message's body not read yet.
    remaining: usize,
    /// The code of the current `R` message, while it is read.
    code: Option<Vec<u8>>,
}

impl AuthGuard {
    pub fn new(allow_cleartext: bool) -> AuthGuard {
        AuthGuard {
            allow_cleartext,
            state: State::Start,
            first_write: Vec::with_capacity(8),
            header: Vec::with_capacity(5),
            remaining: 0,
            code: None,
        }
    }

    /// The client wrote `data`: its first 8 bytes say whether it asked for encryption first.
    pub fn wrote(&mut self, data: &[u8]) {
        if self.state != State::Start {
            return;
        }
        let wanted = 8 - self.first_write.len();
        self.first_write
            .extend_from_slice(&data[..wanted.min(data.len())]);
        if self.first_write.len() < 8 {
            return;
        }
        self.state = if self.first_write == SSL_REQUEST || self.first_write == GSSENC_REQUEST {
            State::AwaitAnswer
        } else if self.first_write[4..8] == [0, 3, 0, 0] {
            // A StartupMessage (protocol 3.0): no encryption.
            State::Messages
        } else {
            // A TLS ClientHello (direct TLS negotiation): encrypted from the first byte.
            State::Done
        };
    }

    /// The server sent `data`.
    pub fn read(&mut self, data: &[u8]) -> Verdict {
        let mut i = 0;
        while i < data.len() {
            match self.state {
                State::Done => return Verdict::Pass,
                State::Refused => return Verdict::Refuse,
                // The server spoke first: watch what it says.
                State::Start => self.state = State::Messages,
                State::AwaitAnswer => {
                    // `S` (or `G`): encryption follows; `N`: plain messages follow.
                    self.state = if data[i] == b'N' {
                        State::Messages
                    } else {
                        State::Done
                    };
                    i += 1;
                }
                State::Messages => i += self.message(&data[i..]),
            }
        }
        if self.state == State::Refused {
            Verdict::Refuse
        } else {
            Verdict::Pass
        }
    }

    /// Takes bytes of the message stream; returns how many it used.
    fn message(&mut self, data: &[u8]) -> usize {
        if self.header.len() < 5 {
            self.header.push(data[0]);
            if self.header.len() == 5 {
                let length = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                // A length below 4 is not a message: the driver fails on it.
                self.remaining = length.saturating_sub(4);
                self.code = (self.header[0] == b'R').then(Vec::new);
                self.end_if_done();
            }
            return 1;
        }
        if let Some(code) = self.code.as_mut().filter(|code| code.len() < 4) {
            code.push(data[0]);
            self.remaining -= 1;
            if code.len() == 4 {
                match u32::from_be_bytes([code[0], code[1], code[2], code[3]]) {
                    CLEARTEXT if !self.allow_cleartext => self.state = State::Refused,
                    OK => self.state = State::Done,
                    _ => {}
                }
            }
            self.end_if_done();
            return 1;
        }
        let taken = self.remaining.min(data.len());
        self.remaining -= taken;
        self.end_if_done();
        taken
    }

    /// After a whole message, the next one starts.
    fn end_if_done(&mut self) {
        if self.remaining == 0 && self.header.len() == 5 {
            self.header.clear();
            self.code = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend_from_slice(&(8 + extra.len() as u32).to_be_bytes());
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(extra);
        m
    }

    fn startup_message() -> Vec<u8> {
        let mut m = vec![0, 0, 0, 17, 0, 3, 0, 0];
        m.extend_from_slice(b"user\0probe\0\0");
        m[3] = m.len() as u8;
        m
    }

    /// A startup: what the client writes first, what the server sends, and whether the guard
    /// must refuse it (cleartext not allowed).
    fn startups() -> Vec<(Vec<u8>, Vec<u8>, Verdict)> {
        let notice = {
            let mut m = vec![b'N', 0, 0, 0, 9];
            m.extend_from_slice(b"Mhi\0\0");
            m
        };
        let sasl = auth(10, b"SCRAM-SHA-256\0\0");
        vec![
            // Plain, cleartext asked: refused.
            (startup_message(), auth(3, b""), Verdict::Refuse),
            // SSLRequest answered N, a notice, then cleartext: refused.
            (
                SSL_REQUEST.to_vec(),
                [b"N".to_vec(), notice.clone(), auth(3, b"")].concat(),
                Verdict::Refuse,
            ),
            // TLS agreed: what follows is encrypted, nothing to judge.
            (
                SSL_REQUEST.to_vec(),
                [b"S".to_vec(), auth(3, b"")].concat(),
                Verdict::Pass,
            ),
            // SCRAM, MD5, trust: passed; after AuthenticationOk nothing is judged.
            (
                startup_message(),
                [
                    sasl,
                    auth(11, b"r=abc"),
                    auth(12, b"v=x"),
                    auth(0, b""),
                    auth(3, b""),
                ]
                .concat(),
                Verdict::Pass,
            ),
            (
                startup_message(),
                [auth(5, b"salt"), auth(0, b"")].concat(),
                Verdict::Pass,
            ),
            (
                startup_message(),
                [auth(0, b""), auth(3, b"")].concat(),
                Verdict::Pass,
            ),
            // An error before authentication: passed (the driver reports it).
            (
                startup_message(),
                [b"E".to_vec(), vec![0, 0, 0, 4]].concat(),
                Verdict::Pass,
            ),
        ]
    }

    /// Feeds `bytes` to `guard` in pieces cut at `cuts`; the first refusal, or pass.
    fn feed(guard: &mut AuthGuard, bytes: &[u8], cuts: &[usize]) -> Verdict {
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        for end in ends {
            if guard.read(&bytes[start..end.max(start)]) == Verdict::Refuse {
                return Verdict::Refuse;
            }
            start = end.max(start);
        }
        Verdict::Pass
    }

    #[test]
    fn cleartext_is_refused_without_tls_and_only_then() {
        for (written, read, verdict) in startups() {
            let mut guard = AuthGuard::new(false);
            guard.wrote(&written);
            assert_eq!(feed(&mut guard, &read, &[]), verdict, "{read:?}");
            let mut allowed = AuthGuard::new(true);
            allowed.wrote(&written);
            assert_eq!(feed(&mut allowed, &read, &[]), Verdict::Pass);
        }
        // A TLS ClientHello first (direct negotiation): encrypted throughout.
        let mut guard = AuthGuard::new(false);
        guard.wrote(&[0x16, 3, 1, 0, 200, 1, 0, 0, 196]);
        assert_eq!(guard.read(&auth(3, b"")), Verdict::Pass);
    }

    proptest! {
        #![proptest_config(crate::postgres::dsn::fuzz::budget(512))]

        /// However reads and writes are split, the verdict is the same.
        #[test]
        fn the_verdict_does_not_depend_on_how_bytes_are_split(
            which in 0usize..7,
            write_cut in 0usize..9,
            cuts in prop::collection::vec(0usize..200, 0..12),
        ) {
            let (written, read, verdict) = startups().swap_remove(which);
            let mut guard = AuthGuard::new(false);
            let cut = write_cut.min(written.len());
            guard.wrote(&written[..cut]);
            guard.wrote(&written[cut..]);
            prop_assert_eq!(feed(&mut guard, &read, &cuts), verdict);
        }
    }
}
