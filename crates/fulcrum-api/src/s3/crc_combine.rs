//! The CRC of two byte strings joined, from the CRC of each and the length
//! of the second (zlib's `crc32_combine`, for any reflected CRC whose
//! initial value and final XOR are all ones): what a multipart upload's
//! full-object CRC32, CRC32C or CRC64NVME (`ChecksumType: FULL_OBJECT`) is
//! computed from, its parts' CRCs and sizes, without reading the data.

/// A reflected CRC of `width` bits (32 or 64) with polynomial `poly`
/// (reflected form).
#[derive(Clone, Copy)]
pub(crate) struct Crc {
    pub width: u32,
    pub poly: u64,
}

pub(crate) const CRC32: Crc = Crc {
    width: 32,
    poly: 0xEDB8_8320,
};
pub(crate) const CRC32C: Crc = Crc {
    width: 32,
    poly: 0x82F6_3B78,
};
pub(crate) const CRC64NVME: Crc = Crc {
    width: 64,
    poly: 0x9A6C_9329_AC4B_C9B5,
};

impl Crc {
    /// x^0 in the reflected representation.
    fn one(self) -> u64 {
        1 << (self.width - 1)
    }

    /// `a` times `b` modulo the polynomial.
    fn mult(self, a: u64, mut b: u64) -> u64 {
        let mut m = self.one();
        let mut p = 0;
        while m != 0 {
            if a & m != 0 {
                p ^= b;
                if a & (m - 1) == 0 {
                    break;
                }
            }
            m >>= 1;
            b = if b & 1 != 0 {
                (b >> 1) ^ self.poly
            } else {
                b >> 1
            };
        }
        p
    }

    /// x^(8·bytes) modulo the polynomial.
    fn shift(self, bytes: u64) -> u64 {
        // x^(2^k) for k = 3 (one byte) upwards, by squaring.
        let mut power = self.one() >> 1; // x^1
        for _ in 0..3 {
            power = self.mult(power, power);
        }
        let (mut n, mut p) = (bytes, self.one());
        while n != 0 {
            if n & 1 != 0 {
                p = self.mult(power, p);
            }
            n >>= 1;
            power = self.mult(power, power);
        }
        p
    }

    /// The CRC of A followed by B, from `crc_a`, `crc_b` and B's length.
    pub(crate) fn combine(self, crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
        self.mult(self.shift(len_b), crc_a) ^ crc_b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bitwise reference CRC (init and final XOR all ones).
    fn crc(c: Crc, data: &[u8]) -> u64 {
        let mask = if c.width == 64 {
            u64::MAX
        } else {
            (1 << c.width) - 1
        };
        let mut r = mask;
        for &b in data {
            r ^= b as u64;
            for _ in 0..8 {
                r = if r & 1 != 0 {
                    (r >> 1) ^ c.poly
                } else {
                    r >> 1
                };
            }
        }
        r ^ mask
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_the_whole() {
        // Check values of the three CRCs ("123456789").
        assert_eq!(crc(CRC32, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc(CRC32C, b"123456789"), 0xE306_9283);
        assert_eq!(crc(CRC64NVME, b"123456789"), 0xAE8B_1486_0A79_9888);
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for c in [CRC32, CRC32C, CRC64NVME] {
            for cut in [0, 1, 7, 8, 100, 4096, 4999, 5000] {
                let (a, b) = data.split_at(cut);
                assert_eq!(
                    c.combine(crc(c, a), crc(c, b), b.len() as u64),
                    crc(c, &data),
                    "width {} cut {cut}",
                    c.width
                );
            }
        }
    }
}
