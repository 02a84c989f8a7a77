//! The digests S3 verifies objects with that the crate's dependencies lack: MD5 (ETags),
//! CRC32 and CRC32C (`x-amz-checksum-*`), and base64 to compare with S3's encoding.
//! Small table-driven implementations, checked against the published test vectors.

/// MD5 (RFC 1321). Only used to compare with S3 ETags, never for security.
#[derive(Clone)]
pub struct Md5 {
    state: [u32; 4],
    buf: [u8; 64],
    buf_len: usize,
    len: u64,
}

const MD5_S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

const MD5_K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

impl Default for Md5 {
    fn default() -> Self {
        Md5 {
            state: [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476],
            buf: [0; 64],
            buf_len: 0,
            len: 0,
        }
    }
}

impl Md5 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let n = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + n].copy_from_slice(&data[..n]);
            self.buf_len += n;
            data = &data[n..];
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            self.block(&block);
            self.buf_len = 0;
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            let mut block = [0u8; 64];
            block.copy_from_slice(c);
            self.block(&block);
        }
        let rest = chunks.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finish(mut self) -> [u8; 16] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = vec![0x80u8];
        let fill = (119 - (self.len % 64) as usize) % 64;
        pad.extend(std::iter::repeat_n(0u8, fill));
        pad.extend_from_slice(&bits.to_le_bytes());
        // `update` counts the padding into `len`; the length is already in `pad`.
        self.update(&pad);
        let mut out = [0u8; 16];
        for (i, w) in self.state.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    fn block(&mut self, block: &[u8; 64]) {
        let mut m = [0u32; 16];
        for (i, w) in m.iter_mut().enumerate() {
            *w = u32::from_le_bytes([
                block[i * 4],
                block[i * 4 + 1],
                block[i * 4 + 2],
                block[i * 4 + 3],
            ]);
        }
        let [mut a, mut b, mut c, mut d] = self.state;
        // Unrolled: the generic loop's per-round match costs a third of the speed, and
        // this hash runs at download speed.
        macro_rules! step {
            ($f:expr, $a:ident, $b:ident, $c:ident, $d:ident, $g:expr, $i:expr) => {
                $a = $b.wrapping_add(
                    $f($b, $c, $d)
                        .wrapping_add($a)
                        .wrapping_add(MD5_K[$i])
                        .wrapping_add(m[$g])
                        .rotate_left(MD5_S[$i]),
                );
            };
        }
        let f = |b: u32, c: u32, d: u32| (b & c) | (!b & d);
        let g = |b: u32, c: u32, d: u32| (d & b) | (!d & c);
        let h = |b: u32, c: u32, d: u32| b ^ c ^ d;
        let i = |b: u32, c: u32, d: u32| c ^ (b | !d);
        let mut k = 0;
        while k < 16 {
            step!(f, a, b, c, d, k, k);
            step!(f, d, a, b, c, k + 1, k + 1);
            step!(f, c, d, a, b, k + 2, k + 2);
            step!(f, b, c, d, a, k + 3, k + 3);
            k += 4;
        }
        while k < 32 {
            step!(g, a, b, c, d, (5 * k + 1) % 16, k);
            step!(g, d, a, b, c, (5 * (k + 1) + 1) % 16, k + 1);
            step!(g, c, d, a, b, (5 * (k + 2) + 1) % 16, k + 2);
            step!(g, b, c, d, a, (5 * (k + 3) + 1) % 16, k + 3);
            k += 4;
        }
        while k < 48 {
            step!(h, a, b, c, d, (3 * k + 5) % 16, k);
            step!(h, d, a, b, c, (3 * (k + 1) + 5) % 16, k + 1);
            step!(h, c, d, a, b, (3 * (k + 2) + 5) % 16, k + 2);
            step!(h, b, c, d, a, (3 * (k + 3) + 5) % 16, k + 3);
            k += 4;
        }
        while k < 64 {
            step!(i, a, b, c, d, (7 * k) % 16, k);
            step!(i, d, a, b, c, (7 * (k + 1)) % 16, k + 1);
            step!(i, c, d, a, b, (7 * (k + 2)) % 16, k + 2);
            step!(i, b, c, d, a, (7 * (k + 3)) % 16, k + 3);
            k += 4;
        }
        self.state[0] = self.state[0].wrapping_add(a);
        self.state[1] = self.state[1].wrapping_add(b);
        self.state[2] = self.state[2].wrapping_add(c);
        self.state[3] = self.state[3].wrapping_add(d);
    }
}

/// Slice-by-8 tables for a reflected CRC-32 polynomial.
const fn crc_tables(poly: u32) -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ poly } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

static CRC32_TABLES: [[u32; 256]; 8] = crc_tables(0xEDB8_8320);
static CRC32C_TABLES: [[u32; 256]; 8] = crc_tables(0x82F6_3B78);

/// CRC-32 (ISO-HDLC, S3's `CRC32`) or CRC-32C (Castagnoli, S3's `CRC32C`).
#[derive(Clone)]
pub struct Crc32 {
    tables: &'static [[u32; 256]; 8],
    crc: u32,
}

impl Crc32 {
    pub fn ieee() -> Self {
        Crc32 {
            tables: &CRC32_TABLES,
            crc: !0,
        }
    }

    pub fn castagnoli() -> Self {
        Crc32 {
            tables: &CRC32C_TABLES,
            crc: !0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        let t = self.tables;
        let mut crc = self.crc;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
            let hi = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xff) as usize]
                ^ t[2][((hi >> 8) & 0xff) as usize]
                ^ t[1][((hi >> 16) & 0xff) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ b as u32) & 0xff) as usize];
        }
        self.crc = crc;
    }

    /// Big-endian bytes, as S3 encodes the checksum before base64.
    pub fn finish(&self) -> [u8; 4] {
        (!self.crc).to_be_bytes()
    }
}

/// Standard base64 with padding (S3's `x-amz-checksum-*` encoding).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (c.get(1).copied().unwrap_or(0) as u32) << 8
            | c.get(2).copied().unwrap_or(0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(data: &[u8]) -> String {
        let mut m = Md5::new();
        m.update(data);
        hex::encode(m.finish())
    }

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            md5_hex(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ),
            "57edf4a22be3c955ac49da2e2107b67a"
        );
        // Split updates across block boundaries give the same digest.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut m = Md5::new();
        for c in data.chunks(37) {
            m.update(c);
        }
        assert_eq!(hex::encode(m.finish()), md5_hex(&data));
    }

    #[test]
    fn crcs_match_the_check_values() {
        let mut c = Crc32::ieee();
        c.update(b"123456789");
        assert_eq!(u32::from_be_bytes(c.finish()), 0xCBF4_3926);
        let mut c = Crc32::castagnoli();
        c.update(b"12345");
        c.update(b"6789");
        assert_eq!(u32::from_be_bytes(c.finish()), 0xE306_9283);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
