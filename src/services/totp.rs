//! TOTP (RFC 6238): HMAC-SHA-1, 30-second steps, 6 digits, the form every
//! authenticator app reads from an `otpauth://` URI; and the base32 its
//! secrets are written in (RFC 4648, no padding).

use ring::hmac;

pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: u32 = 6;

/// The code for time step `step` (RFC 4226's dynamic truncation).
pub fn code(secret: &[u8], step: u64) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let digest = tag.as_ref();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = (u32::from(digest[offset]) & 0x7f) << 24
        | u32::from(digest[offset + 1]) << 16
        | u32::from(digest[offset + 2]) << 8
        | u32::from(digest[offset + 3]);
    binary % 10u32.pow(DIGITS)
}

/// The time step of a Unix time.
pub fn step_at(unix_seconds: u64) -> u64 {
    unix_seconds / STEP_SECONDS
}

/// The step among `now`'s and its neighbours (one step of clock skew
/// either way) whose code is `presented`, if any. Compares every
/// candidate, so the time taken does not say which matched.
pub fn matching_step(secret: &[u8], presented: &str, now: u64) -> Option<u64> {
    let presented = presented.trim();
    if presented.len() != DIGITS as usize || !presented.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = presented.parse().ok()?;
    let current = step_at(now);
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let matches = subtle::ConstantTimeEq::ct_eq(&code(secret, step), &value);
        if bool::from(matches) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    for chunk in bytes.chunks(5) {
        let mut buffer = [0u8; 5];
        buffer[..chunk.len()].copy_from_slice(chunk);
        let bits = buffer.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            let index = (bits >> (35 - i * 5)) & 0x1f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut bits, mut count) = (0u64, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())?;
        bits = bits << 5 | value as u64;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_vectors_truncated_to_six_digits() {
        // RFC 6238 appendix B, SHA-1, seed "12345678901234567890".
        let seed = b"12345678901234567890";
        for (time, eight_digits) in [
            (59u64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            assert_eq!(
                code(seed, step_at(time)),
                eight_digits % 1_000_000,
                "t={time}"
            );
        }
    }

    #[test]
    fn codes_match_within_one_step_of_skew_only() {
        let seed = b"12345678901234567890";
        let now = 1_111_111_111;
        let at = |t: u64| format!("{:06}", code(seed, step_at(t)));
        assert_eq!(matching_step(seed, &at(now), now), Some(step_at(now)));
        assert_eq!(
            matching_step(seed, &at(now - 30), now),
            Some(step_at(now) - 1)
        );
        assert_eq!(
            matching_step(seed, &at(now + 30), now),
            Some(step_at(now) + 1)
        );
        assert_eq!(matching_step(seed, &at(now - 90), now), None);
        assert_eq!(matching_step(seed, "12345", now), None);
        assert_eq!(matching_step(seed, "abcdef", now), None);
    }

    #[test]
    fn base32_round_trips_and_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("not base32!").is_none());
    }
}
