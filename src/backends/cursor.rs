//! Scan cursors: opaque to callers, the last key seen to the stores.
//! Hex keeps any key (slashes, quotes, unicode) safe in a query string.

use super::StoreError;

pub fn encode_cursor(last_key: &str) -> String {
    let mut out = String::with_capacity(last_key.len() * 2);
    for byte in last_key.bytes() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

pub fn decode_cursor(cursor: &str) -> Result<String, StoreError> {
    let bytes = cursor.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(StoreError::BadCursor);
    }
    let decoded = bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or(StoreError::BadCursor)?;
    String::from_utf8(decoded).map_err(|_| StoreError::BadCursor)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_key() {
        for key in ["", "a", "User::\"alice\"", "ключ/with spaces?&"] {
            assert_eq!(decode_cursor(&encode_cursor(key)).unwrap(), key);
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["0", "zz", "ff", "0G"] {
            assert!(
                matches!(decode_cursor(bad), Err(StoreError::BadCursor)),
                "{bad}"
            );
        }
    }
}
