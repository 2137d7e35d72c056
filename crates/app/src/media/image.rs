//! What is done to the bytes of an image: its dimensions read from the
//! header (before anything is decoded), a clean copy (decoded and encoded
//! again, which leaves every metadata block behind: EXIF with its GPS
//! position, XMP, IPTC, comments), and thumbnails. All of it is CPU work,
//! run on the blocking pool by the caller.

use std::io::Cursor;

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use starling_domain::MediaKind;

/// Limits on what is accepted.
#[derive(Debug, Clone)]
pub struct ImageLimits {
    /// Width and height, each.
    pub max_dimension: u32,
    /// Width × height, summed over an animation's frames: what decoding
    /// holds in memory is at most 4 bytes (RGBA) per pixel of it.
    pub max_pixels: u64,
    /// The cleaned file, at most: re-encoding must not turn a small upload
    /// (an animation of tiny frame updates, say) into a large stored file.
    pub max_stored_bytes: usize,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_dimension: 8_192,
            max_pixels: 40_000_000,
            max_stored_bytes: 10 << 20,
        }
    }
}

/// Why an image is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the image is {width}×{height}; at most {max}×{max} is accepted")]
    TooWide { width: u32, height: u32, max: u32 },
    #[error("the image has more than {max} pixels")]
    TooManyPixels { max: u64 },
    #[error("the file is not a readable image: {0}")]
    Unreadable(String),
    #[error("cleaned of its metadata, the image takes {bytes} bytes; at most {max} are stored")]
    TooLargeStored { bytes: usize, max: usize },
}

/// A clean image, ready to store.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub kind: MediaKind,
    pub width: u32,
    pub height: u32,
}

fn format(kind: MediaKind) -> ImageFormat {
    match kind {
        MediaKind::Png => ImageFormat::Png,
        MediaKind::Jpeg => ImageFormat::Jpeg,
        MediaKind::Gif => ImageFormat::Gif,
        MediaKind::Webp => ImageFormat::WebP,
    }
}

fn unreadable(error: impl std::fmt::Display) -> Rejected {
    Rejected::Unreadable(error.to_string())
}

impl ImageLimits {
    fn decoder_limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_dimension);
        limits.max_image_height = Some(self.max_dimension);
        // RGBA with 16 bits a channel, and room for one conversion.
        limits.max_alloc = Some(self.max_pixels.saturating_mul(16));
        limits
    }

    /// The dimensions the header declares, checked against the limits
    /// before a single pixel is decoded: a small file that would expand
    /// into gigabytes (a decompression bomb) is refused here.
    pub fn check(&self, bytes: &[u8], kind: MediaKind) -> Result<(u32, u32), Rejected> {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format(kind));
        reader.no_limits();
        let (width, height) = reader.into_dimensions().map_err(unreadable)?;
        if width > self.max_dimension || height > self.max_dimension {
            return Err(Rejected::TooWide {
                width,
                height,
                max: self.max_dimension,
            });
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(Rejected::TooManyPixels {
                max: self.max_pixels,
            });
        }
        if width == 0 || height == 0 {
            return Err(Rejected::Unreadable("the image is empty".to_owned()));
        }
        Ok((width, height))
    }

    /// The image decoded and encoded again in its own format, without any
    /// of the original's metadata; a JPEG's EXIF orientation is applied to
    /// the pixels first, so that it still shows upright. Animated GIFs keep
    /// their frames and timing.
    pub fn clean(&self, bytes: &[u8], kind: MediaKind) -> Result<Encoded, Rejected> {
        self.check(bytes, kind)?;
        let clean = match kind {
            MediaKind::Gif => self.clean_gif(bytes),
            MediaKind::Png => self.clean_still(bytes, kind, |image, out| {
                image.write_with_encoder(PngEncoder::new(out))
            }),
            MediaKind::Jpeg => self.clean_still(bytes, kind, |image, out| {
                JpegEncoder::new_with_quality(out, 90).encode_image(&image.to_rgb8())
            }),
            // The only WebP encoder at hand is lossless: exact, if larger.
            MediaKind::Webp => self.clean_still(bytes, kind, |image, out| {
                image.write_with_encoder(WebPEncoder::new_lossless(out))
            }),
        }?;
        if clean.bytes.len() > self.max_stored_bytes {
            return Err(Rejected::TooLargeStored {
                bytes: clean.bytes.len(),
                max: self.max_stored_bytes,
            });
        }
        Ok(clean)
    }

    fn clean_still(
        &self,
        bytes: &[u8],
        kind: MediaKind,
        encode: impl FnOnce(&DynamicImage, &mut Vec<u8>) -> image::ImageResult<()>,
    ) -> Result<Encoded, Rejected> {
        let image = self.decode(bytes, kind)?;
        let mut out = Vec::new();
        encode(&image, &mut out).map_err(unreadable)?;
        Ok(Encoded {
            bytes: out,
            kind,
            width: image.width(),
            height: image.height(),
        })
    }

    fn decode(&self, bytes: &[u8], kind: MediaKind) -> Result<DynamicImage, Rejected> {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format(kind));
        reader.limits(self.decoder_limits());
        let mut decoder = reader.into_decoder().map_err(unreadable)?;
        let orientation = decoder.orientation().map_err(unreadable)?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
        image.apply_orientation(orientation);
        Ok(image)
    }

    fn clean_gif(&self, bytes: &[u8]) -> Result<Encoded, Rejected> {
        let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(unreadable)?;
        decoder
            .set_limits(self.decoder_limits())
            .map_err(unreadable)?;
        let (width, height) = decoder.dimensions();
        // Every frame is decoded to the whole canvas, and the budget spent as
        // each arrives: the frame past the budget is dropped at once, so at
        // most one frame more than the budget is ever held.
        let per_frame = u64::from(width) * u64::from(height);
        let mut frames = Vec::new();
        let mut decoded = 0u64;
        for frame in decoder.into_frames() {
            decoded = decoded.saturating_add(per_frame);
            if decoded > self.max_pixels {
                return Err(Rejected::TooManyPixels {
                    max: self.max_pixels,
                });
            }
            frames.push(frame.map_err(unreadable)?);
        }
        let mut out = Vec::new();
        {
            let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
            encoder.set_repeat(Repeat::Infinite).map_err(unreadable)?;
            encoder.encode_frames(frames).map_err(unreadable)?;
        }
        Ok(Encoded {
            bytes: out,
            kind: MediaKind::Gif,
            width,
            height,
        })
    }

    /// A thumbnail fitting in `size`×`size` (never enlarged): PNG when the
    /// image has transparency, else JPEG. An animation's first frame.
    pub fn thumbnail(&self, bytes: &[u8], kind: MediaKind, size: u32) -> Result<Encoded, Rejected> {
        self.check(bytes, kind)?;
        let image = self.decode(bytes, kind)?;
        let thumbnail = if image.width() <= size && image.height() <= size {
            image
        } else {
            image.thumbnail(size, size)
        };
        let (width, height) = (thumbnail.width(), thumbnail.height());
        let mut out = Vec::new();
        let kind = if thumbnail.color().has_alpha() {
            thumbnail
                .write_with_encoder(PngEncoder::new(&mut out))
                .map_err(unreadable)?;
            MediaKind::Png
        } else {
            JpegEncoder::new_with_quality(&mut out, 80)
                .encode_image(&thumbnail.to_rgb8())
                .map_err(unreadable)?;
            MediaKind::Jpeg
        };
        Ok(Encoded {
            bytes: out,
            kind,
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::test_images::gif_of_tiny_updates;

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A kind's signature followed by anything: what a hostile upload
        /// that passes sniffing looks like.
        fn signed_bytes() -> impl Strategy<Value = (MediaKind, Vec<u8>)> {
            let kinds = prop::sample::select(vec![
                (MediaKind::Png, b"\x89PNG\r\n\x1a\n".to_vec()),
                (MediaKind::Jpeg, vec![0xFF, 0xD8, 0xFF]),
                (MediaKind::Gif, b"GIF89a".to_vec()),
                (MediaKind::Webp, b"RIFF\0\0\0\0WEBPVP8 ".to_vec()),
            ]);
            (kinds, prop::collection::vec(any::<u8>(), 0..400)).prop_map(
                |((kind, mut bytes), tail)| {
                    bytes.extend(tail);
                    (kind, bytes)
                },
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1_000))]

            /// Headers and bodies of any shape: an answer (a clean image
            /// within the limits, or a reason), never a panic.
            #[test]
            fn any_upload_is_cleaned_or_refused((kind, bytes) in signed_bytes()) {
                let limits = ImageLimits {
                    max_dimension: 64,
                    max_pixels: 2_048,
                    max_stored_bytes: 64 << 10,
                };
                if let Ok((width, height)) = limits.check(&bytes, kind) {
                    prop_assert!(width <= 64 && height <= 64);
                    prop_assert!(u64::from(width) * u64::from(height) <= 2_048);
                }
                if let Ok(clean) = limits.clean(&bytes, kind) {
                    prop_assert!(clean.width <= 64 && clean.height <= 64);
                    prop_assert!(clean.bytes.len() <= 64 << 10);
                }
                let _ = limits.thumbnail(&bytes, kind, 16);
            }
        }
    }
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    #[test]
    fn an_animation_is_bounded_by_its_frames_and_by_what_it_would_store() {
        let gif = gif_of_tiny_updates(100, 200);
        assert!(gif.len() < 6_000, "{}", gif.len());
        // 200 frames of 10,000 pixels each: 2 million decoded pixels.
        let limits = ImageLimits {
            max_pixels: 1_000_000,
            ..ImageLimits::default()
        };
        assert_eq!(
            limits.clean(&gif, MediaKind::Gif).unwrap_err(),
            Rejected::TooManyPixels { max: 1_000_000 }
        );
        // Within the pixels, it still may not grow into a large file.
        let clean = ImageLimits::default().clean(&gif, MediaKind::Gif).unwrap();
        assert!(
            clean.bytes.len() > 4 * gif.len(),
            "{} from {}",
            clean.bytes.len(),
            gif.len()
        );
        let limits = ImageLimits {
            max_stored_bytes: 2 * gif.len(),
            ..ImageLimits::default()
        };
        assert!(matches!(
            limits.clean(&gif, MediaKind::Gif),
            Err(Rejected::TooLargeStored { .. })
        ));
    }

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn photo(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }))
    }

    /// A JPEG with an EXIF block (as cameras write, with a position in it).
    fn jpeg_with_exif(secret: &str) -> Vec<u8> {
        let plain = encode(&photo(64, 48), ImageFormat::Jpeg);
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
        exif.extend_from_slice(secret.as_bytes());
        let length = u16::try_from(exif.len() + 2).unwrap().to_be_bytes();
        let mut with = plain[..2].to_vec();
        with.extend_from_slice(&[0xFF, 0xE1, length[0], length[1]]);
        with.extend_from_slice(&exif);
        with.extend_from_slice(&plain[2..]);
        with
    }

    #[test]
    fn every_kind_comes_out_clean_in_its_own_format() {
        let limits = ImageLimits::default();
        let image = photo(40, 30);
        for (kind, format) in [
            (MediaKind::Png, ImageFormat::Png),
            (MediaKind::Jpeg, ImageFormat::Jpeg),
            (MediaKind::Gif, ImageFormat::Gif),
            (MediaKind::Webp, ImageFormat::WebP),
        ] {
            let bytes = encode(&image, format);
            assert_eq!(MediaKind::sniff(&bytes), Some(kind));
            let clean = limits.clean(&bytes, kind).unwrap();
            assert_eq!((clean.width, clean.height, clean.kind), (40, 30, kind));
            assert_eq!(MediaKind::sniff(&clean.bytes), Some(kind), "{kind:?}");
        }
    }

    #[test]
    fn metadata_does_not_survive_cleaning() {
        let bytes = jpeg_with_exif("GPS 48.8584N 2.2945E");
        assert!(bytes.windows(4).any(|w| w == b"Exif"));
        let clean = ImageLimits::default()
            .clean(&bytes, MediaKind::Jpeg)
            .unwrap();
        assert!(!clean.bytes.windows(4).any(|w| w == b"Exif"));
        assert!(!clean.bytes.windows(3).any(|w| w == b"GPS"));
        assert_eq!((clean.width, clean.height), (64, 48));
    }

    #[test]
    fn oversized_images_are_refused_from_their_header() {
        let limits = ImageLimits {
            max_dimension: 100,
            max_pixels: 5_000,
            ..ImageLimits::default()
        };
        let wide = encode(&photo(120, 10), ImageFormat::Png);
        assert!(matches!(
            limits.check(&wide, MediaKind::Png),
            Err(Rejected::TooWide { width: 120, .. })
        ));
        let big = encode(&photo(80, 80), ImageFormat::Png);
        assert!(matches!(
            limits.check(&big, MediaKind::Png),
            Err(Rejected::TooManyPixels { .. })
        ));
        assert!(matches!(
            limits.check(b"\x89PNG\r\n\x1a\nnonsense", MediaKind::Png),
            Err(Rejected::Unreadable(_))
        ));
    }

    #[test]
    fn thumbnails_fit_the_box_and_keep_transparency() {
        let limits = ImageLimits::default();
        let photo_bytes = encode(&photo(800, 400), ImageFormat::Png);
        let thumb = limits.thumbnail(&photo_bytes, MediaKind::Png, 200).unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.kind),
            (200, 100, MediaKind::Jpeg)
        );
        let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(300, 300, Rgba([0, 0, 0, 0])));
        let clear_bytes = encode(&clear, ImageFormat::Png);
        let thumb = limits.thumbnail(&clear_bytes, MediaKind::Png, 200).unwrap();
        assert_eq!(
            (thumb.width, thumb.height, thumb.kind),
            (200, 200, MediaKind::Png)
        );
        // Small images are not enlarged.
        let small = encode(&photo(50, 20), ImageFormat::Jpeg);
        let thumb = limits.thumbnail(&small, MediaKind::Jpeg, 200).unwrap();
        assert_eq!((thumb.width, thumb.height), (50, 20));
    }
}
