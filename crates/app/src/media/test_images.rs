//! Images built byte by byte for tests (of this crate, and the black-box
//! tests of the binary): shapes no encoder at hand writes.

#![allow(clippy::unwrap_used)]

/// An animated GIF of `frames` frames on a `side`×`side` canvas, each
/// frame a one-pixel update: a few bytes per frame, however large the
/// canvas (what a decompression bomb of frames looks like).
pub fn gif_of_tiny_updates(side: u16, frames: usize) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend_from_slice(&side.to_le_bytes());
    gif.extend_from_slice(&side.to_le_bytes());
    // A global table of two colours, black and white.
    gif.extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF]);
    for frame in 0..frames {
        // 10 ms per frame.
        gif.extend_from_slice(&[0x21, 0xF9, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00]);
        let at = u16::try_from(frame % usize::from(side)).unwrap();
        gif.push(0x2C);
        gif.extend_from_slice(&at.to_le_bytes());
        gif.extend_from_slice(&at.to_le_bytes());
        gif.extend_from_slice(&[1, 0, 1, 0, 0]);
        // LZW, minimum code size 2: clear (4), colour 1, end (5), in
        // 3-bit codes, least significant bit first.
        gif.extend_from_slice(&[0x02, 0x02, 0x4C, 0x01, 0x00]);
    }
    gif.push(0x3B);
    gif
}
