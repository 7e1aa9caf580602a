//! The only I/O of the core: reading a routes.d directory.

use std::path::Path;
use std::sync::Arc;

use crate::compile::Compiler;
use crate::{Error, RouteTable};

/// The text of every routes.d file, in file-name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The directory, for diagnostics about the whole configuration.
    root: Option<Arc<str>>,
    files: Vec<(Arc<str>, String)>,
}

/// Whether a directory entry is a routes.d file: `*.toml`, not hidden, not an
/// editor leftover.
pub(crate) fn is_route_file(name: &str) -> bool {
    name.ends_with(".toml")
        && !name.starts_with('.')
        && !name.ends_with('~')
        && ![".swp", ".swx", ".tmp", ".bak"]
            .iter()
            .any(|s| name.ends_with(s))
}

impl Sources {
    /// No files yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one file's text; `path` is what diagnostics will show.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.push((Arc::from(path.into()), text.into()));
    }

    /// Reads every `*.toml` file directly in `dir`, in lexical order of file
    /// name. Hidden files, editor leftovers and subdirectories are skipped;
    /// symbolic links are followed (a Kubernetes ConfigMap mounts files
    /// through a `..data` link).
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or a file cannot be read, or a file
    /// is not UTF-8.
    pub fn read_dir(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let io = |path: &Path, source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !is_route_file(name) {
                continue;
            }
            let path = entry.path();
            // metadata() follows symlinks; a dangling link is skipped.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => names.push(name.to_owned()),
                _ => continue,
            }
        }
        names.sort();
        let mut s = Sources::new();
        s.root = Some(dir.display().to_string().into());
        for name in names {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "file is not UTF-8"),
                )
            })?;
            s.add(path.display().to_string(), text);
        }
        Ok(s)
    }

    /// The files, as `(path, text)`.
    pub fn files(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(p, t)| (&**p, t.as_str()))
    }

    /// A digest of file names and contents: equal digests, equal tables.
    /// BLAKE3 (256 bits, in hex): `serve` skips a reload whose digest is
    /// unchanged, so a collision must be out of reach, not merely unlikely.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        for (p, t) in &self.files {
            let name = p.rsplit('/').next().unwrap_or(p);
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&(t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    /// Parses, validates and compiles these files into a table.
    ///
    /// # Errors
    /// [`Error::Config`] with every diagnostic when any file is invalid.
    pub fn build(&self) -> Result<RouteTable, Error> {
        let compiler = Compiler::new(self.root(), &self.files);
        let size: usize = self.files.iter().map(|(_, t)| t.len()).sum();
        if size < 1 << 20 {
            return compiler.run(|| self.digest());
        }
        // Hash a large deck while it compiles.
        std::thread::scope(|s| {
            let digest = s.spawn(|| self.digest());
            compiler.run(|| digest.join().unwrap_or_else(|_| self.digest()))
        })
    }

    pub(crate) fn root(&self) -> Arc<str> {
        self.root.clone().unwrap_or_else(|| "routes.d".into())
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> &[(Arc<str>, String)] {
        &self.files
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is BLAKE3 over length-framed names and texts (it was a
    /// home-made pair of FNV hashes, where a collision skips a reload).
    #[test]
    fn digest_is_blake3_of_framed_names_and_texts() {
        let mut s = Sources::new();
        s.add("routes.d/10-a.toml", "x = 1\n");
        let mut framed = Vec::new();
        for part in ["10-a.toml", "x = 1\n"] {
            framed.extend_from_slice(&(part.len() as u64).to_le_bytes());
            framed.extend_from_slice(part.as_bytes());
        }
        assert_eq!(s.digest(), blake3::hash(&framed).to_hex().as_str());
        // Moving a byte from one file's name to its text changes the digest.
        let mut t = Sources::new();
        t.add("routes.d/10-a.tom", "lx = 1\n");
        assert_ne!(s.digest(), t.digest());
    }

    #[test]
    fn route_file_names() {
        for ok in ["a.toml", "10-x.toml"] {
            assert!(is_route_file(ok));
        }
        for no in [
            ".a.toml",
            "a.toml~",
            "a.toml.swp",
            "a.tmp",
            "a.toml.bak",
            "4913",
            "a.json",
            "..data",
        ] {
            assert!(!is_route_file(no), "{no}");
        }
    }
}
