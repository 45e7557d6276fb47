//! Compressed input files: which ones are (by their extension, as Spark and DataFusion decide)
//! and a reader that gives their decompressed bytes. Knows nothing of lines or SQL.

use std::io::{self, BufReader, Read};
use std::path::Path;

/// The compression of a file, from its name's last extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    /// `.gz`, `.bz2`, `.xz` and `.zst` files are compressed; anything else is read as it is.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "gz" => Some(Self::Gzip),
            "bz2" => Some(Self::Bzip2),
            "xz" => Some(Self::Xz),
            "zst" => Some(Self::Zstd),
            _ => None,
        }
    }

    /// A reader of the decompressed bytes of `file` (a file's compressed bytes). Files of several concatenated members (as
    /// `cat a.gz b.gz` makes) are read whole, as the command-line tools do.
    pub fn decoder(self, file: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
        let buffered = BufReader::with_capacity(1 << 16, file);
        Ok(match self {
            Self::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Self::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
            Self::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
            Self::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    fn round_trip(name: &str, compressed: Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, compressed).unwrap();
        let kind = Compression::of(&path).expect("a compressed extension");
        let mut text = String::new();
        kind.decoder(File::open(&path).unwrap())
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "one line\nand two\n", "{name}");
    }

    #[test]
    fn every_kind_reads_back_and_others_are_plain() {
        let text = b"one line\nand two\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text[..9]).unwrap();
        let mut two_members = gz.finish().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&text[9..]).unwrap();
        two_members.extend(gz.finish().unwrap());
        round_trip("a.txt.gz", two_members);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(text).unwrap();
        round_trip("a.bz2", bz.finish().unwrap());
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(text).unwrap();
        round_trip("a.log.xz", xz.finish().unwrap());
        round_trip("a.zst", zstd::stream::encode_all(&text[..], 1).unwrap());
        assert_eq!(Compression::of(Path::new("a.txt")), None);
        assert_eq!(Compression::of(Path::new("gz")), None);
    }
}
