//! Title, artist, album and cover art from a file's tags (ID3v2, Vorbis comments, MP4 `ilst`,
//! FLAC pictures), as symphonia reports them.

use symphonia::core::meta::{MetadataRevision, StandardTagKey, StandardVisualKey, Value};

use antiphon_core::limits::{MAX_COVER_BYTES, MAX_TEXT_BYTES};

/// What the tags said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tags {
    /// Track title.
    pub title: Option<String>,
    /// Artist.
    pub artist: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Cover image: its bytes and MIME type (sniffed from the bytes, not trusted from the tag).
    pub cover: Option<(Vec<u8>, &'static str)>,
}

impl Tags {
    /// Fills what is still unknown from one metadata revision.
    pub fn absorb(&mut self, revision: &MetadataRevision) {
        for tag in revision.tags() {
            let slot = match tag.std_key {
                Some(StandardTagKey::TrackTitle) => &mut self.title,
                Some(StandardTagKey::Artist) => &mut self.artist,
                Some(StandardTagKey::Album) => &mut self.album,
                _ => continue,
            };
            if let (None, Value::String(s)) = (&slot, &tag.value) {
                *slot = clean_text(s);
            }
        }
        if self.cover.is_none() {
            // The front cover if one is marked as such, else the first image.
            let visuals = revision.visuals();
            let front = visuals.iter().find(|v| v.usage == Some(StandardVisualKey::FrontCover));
            for visual in front.into_iter().chain(visuals) {
                if let Some(mime) = sniff_image(&visual.data)
                    && (visual.data.len() as u64) <= MAX_COVER_BYTES
                {
                    self.cover = Some((visual.data.to_vec(), mime));
                    break;
                }
            }
        }
    }
}

/// Trims a tag value, drops it if empty, and cuts it to the manifest's text limit on a
/// character boundary.
fn clean_text(s: &str) -> Option<String> {
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if s.is_empty() {
        return None;
    }
    let mut end = s.len().min(MAX_TEXT_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Some(s[..end].to_string())
}

/// The MIME type of an image from its first bytes, if it is one a manifest may link.
pub fn sniff_image(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(clean_text("  Song\0"), Some("Song".into()));
        assert_eq!(clean_text(" \0 "), None);
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = clean_text(&long).unwrap();
        assert!(cut.len() <= MAX_TEXT_BYTES && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<svg>"), None);
    }
}
