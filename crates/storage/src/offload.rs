//! Blob offload between the registry and the proxy in front of it, in the
//! spirit of nginx's `X-Accel-Redirect`: the registry still decides every
//! pull (token, repository link, range), but when the proxy says it can read
//! the same storage volume, the registry answers with the blob's digest and
//! byte range instead of the bytes, and the proxy sends them from the file.
//! A blob then crosses one process and one socket instead of two of each.
//!
//! Blobs are content-addressed and only ever placed by an atomic rename, so
//! the file the proxy opens holds exactly the bytes the registry approved.
//! The path comes from a parsed digest, never from a path in the header.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use wharf_oci::Digest;

/// Request header: the proxy can send blobs itself (value `1`). Response
/// header: `<digest> <offset> <length>`, with an empty body.
pub const HEADER: &str = "x-wharf-blob-offload";

/// The part of a blob the proxy is to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offload {
    pub digest: Digest,
    pub offset: u64,
    pub length: u64,
}

impl Offload {
    pub fn header_value(&self) -> String {
        format!("{} {} {}", self.digest, self.offset, self.length)
    }

    /// `None` for anything but exactly `<digest> <offset> <length>`.
    pub fn parse(value: &str) -> Option<Offload> {
        let mut parts = value.split(' ');
        let digest = Digest::parse(parts.next()?).ok()?;
        let offset = parts.next()?.parse().ok()?;
        let length = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Offload {
            digest,
            offset,
            length,
        })
    }
}

/// Size of each read when streaming a file: large enough that per-chunk
/// overhead vanishes, small enough that memory stays flat.
const CHUNK: usize = 1 << 20;

/// Streams `len` bytes of `file` from `start`, read ahead on a blocking
/// thread. Each chunk is read into fresh, uninitialised capacity (no zeroing
/// pass) and handed to the socket writer without a further copy. A file
/// shorter than `start + len` ends the stream with `UnexpectedEof`.
pub fn file_stream(
    mut file: File,
    start: u64,
    len: u64,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let n = remaining.min(CHUNK as u64);
            let mut buf = Vec::with_capacity(n as usize);
            match (&mut file).take(n).read_to_end(&mut buf) {
                Ok(got) if got as u64 == n => {}
                Ok(_) => {
                    let _ = tx.blocking_send(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shorter than its size",
                    )));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            remaining -= n;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return; // the reader went away
            }
        }
    });
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::io::Write;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn header_round_trips_and_rejects_anything_else() {
        let o = Offload {
            digest: Digest::parse(D).unwrap(),
            offset: 5,
            length: 1 << 40,
        };
        assert_eq!(Offload::parse(&o.header_value()), Some(o));
        for bad in [
            "",
            "1",
            D,
            &format!("{D} 0"),
            &format!("{D} 0 1 2"),
            &format!("{D} -1 1"),
            &format!("{D}  0 1"),
            "sha256:../../etc/passwd 0 1",
            "md5:00 0 1",
        ] {
            assert_eq!(Offload::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn streams_a_range_and_reports_a_short_file() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let got: Vec<u8> = file_stream(f.try_clone().unwrap(), 10, 2_500_000)
            .map(|c| c.unwrap())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(got, data[10..2_500_010]);
        let last = file_stream(f, 2_000_000, 1_500_000)
            .collect::<Vec<_>>()
            .await
            .pop()
            .unwrap();
        assert_eq!(last.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
