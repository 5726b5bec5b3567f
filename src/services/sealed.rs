//! Encrypted streams for backups: AES-256-GCM in 64 KiB chunks.
//!
//! Layout: `PCBE1`, a 4-byte random nonce prefix, then chunks, each a
//! big-endian `u32` length and that many bytes of ciphertext and tag. A
//! chunk's nonce is the prefix and its 8-byte index; its additional data
//! says whether it is the last chunk, so a truncated or reordered stream
//! fails to open, as does any altered byte or a wrong key.

use std::io::{self, Read, Write};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const MAGIC: &[u8; 5] = b"PCBE1";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// A 256-bit key.
pub struct SealKey(LessSafeKey);

impl SealKey {
    /// From the 32 raw bytes; `None` for any other length.
    pub fn new(bytes: &[u8]) -> Option<SealKey> {
        let key = UnboundKey::new(&AES_256_GCM, bytes).ok()?;
        Some(SealKey(LessSafeKey::new(key)))
    }
}

fn nonce(prefix: [u8; 4], index: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&prefix);
    bytes[4..].copy_from_slice(&index.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

fn aad(last: bool) -> Aad<[u8; 1]> {
    Aad::from([u8::from(last)])
}

/// Encrypts what is written into `inner`; [`Sealer::finish`] writes the
/// last chunk and must be called.
pub struct Sealer<'k, W: Write> {
    inner: W,
    key: &'k SealKey,
    prefix: [u8; 4],
    index: u64,
    buffer: Vec<u8>,
}

impl<'k, W: Write> Sealer<'k, W> {
    pub fn new(mut inner: W, key: &'k SealKey) -> io::Result<Self> {
        let mut prefix = [0u8; 4];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| io::Error::other("the system random number generator failed"))?;
        inner.write_all(MAGIC)?;
        inner.write_all(&prefix)?;
        Ok(Sealer {
            inner,
            key,
            prefix,
            index: 0,
            buffer: Vec::with_capacity(CHUNK + TAG),
        })
    }

    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let nonce = nonce(self.prefix, self.index);
        self.index += 1;
        self.key
            .0
            .seal_in_place_append_tag(nonce, aad(last), &mut self.buffer)
            .map_err(|_| io::Error::other("encryption failed"))?;
        let len = u32::try_from(self.buffer.len()).map_err(io::Error::other)?;
        self.inner.write_all(&len.to_be_bytes())?;
        self.inner.write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }

    /// Seals what is buffered as the last chunk; answers the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.seal_chunk(true)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for Sealer<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buffer.len();
        let n = room.min(buf.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == CHUNK {
            self.seal_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Decrypts a stream [`Sealer`] wrote; any damage is an `InvalidData` error.
pub struct Opener<'k, R: Read> {
    inner: R,
    key: &'k SealKey,
    prefix: [u8; 4],
    index: u64,
    plain: Vec<u8>,
    at: usize,
    done: bool,
}

fn damaged(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl<'k, R: Read> Opener<'k, R> {
    pub fn new(mut inner: R, key: &'k SealKey) -> io::Result<Self> {
        let mut head = [0u8; 9];
        inner
            .read_exact(&mut head)
            .map_err(|_| damaged("not an encrypted backup"))?;
        if &head[..5] != MAGIC {
            return Err(damaged("not an encrypted backup"));
        }
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&head[5..]);
        Ok(Opener {
            inner,
            key,
            prefix,
            index: 0,
            plain: Vec::new(),
            at: 0,
            done: false,
        })
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut len = [0u8; 4];
        self.inner
            .read_exact(&mut len)
            .map_err(|_| damaged("the encrypted stream is cut short"))?;
        let len = u32::from_be_bytes(len) as usize;
        if !(TAG..=CHUNK + TAG).contains(&len) {
            return Err(damaged("an encrypted chunk has an impossible length"));
        }
        self.plain.resize(len, 0);
        self.inner
            .read_exact(&mut self.plain)
            .map_err(|_| damaged("the encrypted stream is cut short"))?;
        let nonce = nonce(self.prefix, self.index);
        self.index += 1;
        // The sealer fills every chunk but the last, which it always
        // writes (empty if need be): a short chunk is the last one.
        let last = len < CHUNK + TAG;
        let plain_len = self
            .key
            .0
            .open_in_place(nonce, aad(last), &mut self.plain)
            .map_err(|_| {
                damaged("it cannot be decrypted with the configured key (wrong key, or altered)")
            })?
            .len();
        self.plain.truncate(plain_len);
        self.at = 0;
        self.done = last;
        Ok(())
    }
}

impl<R: Read> Read for Opener<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() {
            if self.done {
                let mut extra = [0u8; 1];
                if self.inner.read(&mut extra)? != 0 {
                    return Err(damaged("bytes follow the last encrypted chunk"));
                }
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = buf.len().min(self.plain.len() - self.at);
        buf[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::new(&[byte; 32]).unwrap()
    }

    fn seal(plain: &[u8], key: &SealKey) -> Vec<u8> {
        let mut sealer = Sealer::new(Vec::new(), key).unwrap();
        sealer.write_all(plain).unwrap();
        sealer.finish().unwrap()
    }

    fn open(sealed: &[u8], key: &SealKey) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Opener::new(sealed, key)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn streams_of_any_length_round_trip() {
        let k = key(7);
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(open(&seal(&plain, &k), &k).unwrap(), plain, "{len}");
        }
    }

    #[test]
    fn a_wrong_key_an_altered_byte_or_a_cut_stream_fails() {
        let k = key(7);
        let plain = vec![42u8; 2 * CHUNK + 10];
        let sealed = seal(&plain, &k);
        assert!(open(&sealed, &key(8)).is_err());
        let mut altered = sealed.clone();
        altered[CHUNK] ^= 1;
        assert!(open(&altered, &k).is_err());
        // Whole chunks dropped from the end: the new last chunk is not
        // marked last.
        let cut = &sealed[..9 + 2 * (4 + CHUNK + TAG)];
        assert!(open(cut, &k).is_err());
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&longer, &k).is_err());
    }
}
