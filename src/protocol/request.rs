//! `Request`: one client command as argument slices plus the raw bytes to forward.

use bytes::{BufMut, Bytes, BytesMut};

/// One client command: its arguments (`args[0]` is the name) and its RESP encoding.
///
/// Both views share one buffer; `raw` is exactly what the client sent for a multibulk request,
/// so forwarding never re-encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    args: Vec<Bytes>,
    raw: Bytes,
}

impl Request {
    /// Wraps decoded arguments and the frame they were sliced from.
    pub(crate) fn from_parts(args: Vec<Bytes>, raw: Bytes) -> Self {
        debug_assert!(!args.is_empty(), "a request has at least a name");
        Self { args, raw }
    }

    /// Several commands sent as one job (a transaction: MULTI ... EXEC); named `EXEC`.
    pub fn batch(raw: Bytes) -> Self {
        Self {
            args: vec![Bytes::from_static(b"EXEC")],
            raw,
        }
    }

    /// Builds a request from arguments, encoding them as a RESP multibulk.
    pub fn from_args<I, A>(args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<Bytes>,
    {
        let args: Vec<Bytes> = args.into_iter().map(Into::into).collect();
        let mut raw =
            BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        encode_multibulk(&mut raw, &args);
        Self {
            args,
            raw: raw.freeze(),
        }
    }

    /// All arguments, the command name first.
    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    /// The command name as sent (any case).
    pub fn name(&self) -> &[u8] {
        &self.args[0]
    }

    /// The RESP bytes to forward to a node.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }
}

/// Appends `args` to `out` as a RESP array of bulk strings.
pub fn encode_multibulk(out: &mut BytesMut, args: &[Bytes]) {
    write_len_line(out, b'*', args.len());
    for arg in args {
        write_len_line(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

fn write_len_line(out: &mut BytesMut, prefix: u8, len: usize) {
    let mut buf = itoa_buf();
    out.put_u8(prefix);
    out.put_slice(fmt_usize(&mut buf, len));
    out.put_slice(b"\r\n");
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Formats `n` in decimal into `buf`, returning the used tail.
pub(crate) fn fmt_usize(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_args_encodes_multibulk() {
        let req = Request::from_args(["SET", "k", ""]);
        assert_eq!(&req.raw()[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(req.name(), b"SET");
        assert_eq!(req.args().len(), 3);
    }

    #[test]
    fn fmt_usize_formats_edges() {
        let mut buf = [0; 20];
        assert_eq!(fmt_usize(&mut buf, 0), b"0");
        assert_eq!(fmt_usize(&mut buf, 10), b"10");
        assert_eq!(
            fmt_usize(&mut buf, usize::MAX),
            usize::MAX.to_string().as_bytes()
        );
    }
}
