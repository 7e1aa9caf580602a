//! The only I/O of the core: reading a routes.d directory, and the rate
//! decks its trunks name (SPEC §7).

use std::path::Path;
use std::sync::Arc;

use crate::compile::Compiler;
use crate::rates::source::{RateSource, normalize_rate_path};
use crate::{Error, RouteTable};

/// The text of every routes.d file, in file-name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The directory, for diagnostics about the whole configuration.
    root: Option<Arc<str>>,
    files: Vec<(Arc<str>, String)>,
    /// The rate decks the files name, by path relative to routes.d.
    rates: Vec<RateSource>,
    /// Compile threads; `None`: [`Compiler::default_threads`].
    threads: Option<usize>,
}

/// Every `rates = "…"` of the trunks of one routes.d file. Files that cannot
/// be parsed, or do not mention `rates` at all (a large rule deck), give none.
fn deck_paths(text: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Refs {
        #[serde(default)]
        trunks: std::collections::BTreeMap<String, TrunkRef>,
    }
    #[derive(serde::Deserialize)]
    struct TrunkRef {
        rates: Option<String>,
    }
    // A key `rates` followed by `=` (possibly quoted): cheap to rule out.
    let mentions = memchr::memmem::find_iter(text.as_bytes(), b"rates").any(|at| {
        let rest = text[at + 5..].trim_start_matches(['"', '\'']);
        rest.trim_start_matches([' ', '\t']).starts_with('=')
    });
    if !mentions {
        return Vec::new();
    }
    match toml::from_str::<Refs>(text) {
        Ok(r) => r.trunks.into_values().filter_map(|t| t.rates).collect(),
        Err(_) => Vec::new(),
    }
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

    /// Compiles on at most `n` threads ([`Sources::build`]); `0` counts as
    /// `1`. The default is the number of CPUs, at most 8. With one thread,
    /// `build` starts no thread at all; with more, every thread it starts
    /// has ended when it returns, except the one that frees a large
    /// table's leftovers (see the crate documentation, "Threads").
    pub fn threads(&mut self, n: usize) -> &mut Self {
        self.threads = Some(n.max(1));
        self
    }

    /// The number of compile threads [`Sources::build`] uses.
    pub fn thread_count(&self) -> usize {
        self.threads.unwrap_or_else(Compiler::default_threads)
    }

    /// Adds one file's text; `path` is what diagnostics will show.
    pub fn add(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.files.push((Arc::from(path.into()), text.into()));
    }

    /// Adds one rate deck's bytes (CSV, or gzip-compressed CSV) in memory,
    /// under `path` relative to routes.d as a trunk's `rates` names it
    /// (`rates/acme.csv`); diagnostics show `path`. [`Sources::read_dir`]
    /// does this for every deck the files name.
    pub fn add_rate_file(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        let path = path.into();
        let key = normalize_rate_path(&path).unwrap_or_else(|_| path.clone());
        self.put_rate(RateSource {
            key: key.into(),
            shown: path.into(),
            bytes: Ok(bytes.into()),
        });
    }

    fn put_rate(&mut self, r: RateSource) {
        match self.rates.binary_search_by(|x| x.key.cmp(&r.key)) {
            Ok(i) => self.rates[i] = r,
            Err(i) => self.rates.insert(i, r),
        }
    }

    /// The rate decks, as `(path shown, bytes or why they could not be read)`.
    pub fn rate_files(&self) -> impl Iterator<Item = (&str, Result<&[u8], &str>)> {
        self.rates
            .iter()
            .map(|r| (&*r.shown, r.bytes.as_deref().map_err(String::as_str)))
    }

    /// Reads the rate decks the files' trunks name (`rates = "…"`), each
    /// relative to `dir`. A deck that does not exist, is not a file, or
    /// leaves `dir` (through `..` or a symbolic link) is recorded as such:
    /// the compile reports it at the TOML line of its `rates`.
    fn read_rates(&mut self, dir: &Path) {
        let root = std::fs::canonicalize(dir).ok();
        let mut wanted: Vec<String> = Vec::new();
        for (_, text) in &self.files {
            for p in deck_paths(text) {
                if let Ok(k) = normalize_rate_path(&p) {
                    wanted.push(k);
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        for key in wanted {
            let path = dir.join(&key);
            let bytes = match (std::fs::canonicalize(&path), &root) {
                (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(format!("{} does not exist", path.display()))
                }
                (Err(e), _) => Err(format!("cannot read {}: {e}", path.display())),
                (Ok(real), Some(root)) if !real.starts_with(root) => Err(format!(
                    "{} leaves the routes.d directory through a symbolic link (to {}); decks must live inside it",
                    path.display(),
                    real.display()
                )),
                (Ok(real), _) if !real.is_file() => {
                    Err(format!("{} is not a file", path.display()))
                }
                (Ok(_), _) => {
                    std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
                }
            };
            self.put_rate(RateSource {
                key: key.into(),
                shown: path.display().to_string().into(),
                bytes,
            });
        }
    }

    /// Reads every `*.toml` file directly in `dir`, in lexical order of file
    /// name. Hidden files, editor leftovers and subdirectories are skipped;
    /// symbolic links are followed (a Kubernetes ConfigMap mounts files
    /// through a `..data` link). Then reads the rate decks the trunks name
    /// (`rates = "rates/acme.csv"`, relative to `dir`), wherever they are
    /// under it; a missing or escaping deck is reported by the build.
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
        s.read_rates(dir);
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
        // Rate decks (sorted by path): an edited deck is a new table.
        for r in &self.rates {
            h.update(b"\0rates");
            h.update(&(r.key.len() as u64).to_le_bytes());
            h.update(r.key.as_bytes());
            let (tag, bytes): (u8, &[u8]) = match &r.bytes {
                Ok(b) => (1, b),
                Err(e) => (0, e.as_bytes()),
            };
            h.update(&[tag]);
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        h.finalize().to_hex().to_string()
    }

    /// Parses, validates and compiles these files into a table.
    ///
    /// # Errors
    /// [`Error::Config`] with every diagnostic when any file is invalid.
    pub fn build(&self) -> Result<RouteTable, Error> {
        let threads = self.thread_count();
        let compiler = Compiler::new(self.root(), &self.files, threads).with_rates(&self.rates);
        let size: usize = self.files.iter().map(|(_, t)| t.len()).sum::<usize>()
            + self
                .rates
                .iter()
                .map(|r| r.bytes.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
        if size < 1 << 20 || threads == 1 {
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
    fn rate_paths_stay_inside_routes_d() {
        assert_eq!(
            normalize_rate_path("rates/acme.csv"),
            Ok("rates/acme.csv".into())
        );
        assert_eq!(
            normalize_rate_path("./rates//x/../acme.csv"),
            Ok("rates/acme.csv".into())
        );
        for bad in [
            "../acme.csv",
            "rates/../../x.csv",
            "/etc/passwd",
            "",
            ".",
            "rates/..",
        ] {
            assert!(normalize_rate_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            deck_paths("[trunks.a]\ngateways = []\nrates = \"r/a.csv\"\n"),
            vec!["r/a.csv"]
        );
        assert_eq!(deck_paths("trunks.b.\"rates\" = \"b.csv\""), vec!["b.csv"]);
        assert!(deck_paths("[[rules]]\nname = \"rates\"\n").is_empty());
    }

    #[test]
    fn decks_change_the_digest() {
        let mut a = Sources::new();
        a.add("routes.d/10-a.toml", "x = 1\n");
        let plain = a.digest();
        a.add_rate_file("rates/a.csv", b"prefix,rate\n44,0.01\n".to_vec());
        let with = a.digest();
        assert_ne!(plain, with);
        a.add_rate_file("rates/a.csv", b"prefix,rate\n44,0.02\n".to_vec());
        assert_ne!(with, a.digest());
    }

    /// `threads` sets the compile threads; 0 counts as 1, and one thread
    /// builds the same table as the default.
    #[test]
    fn compile_threads_can_be_set() {
        let mut s = Sources::new();
        assert!((1..=8).contains(&s.thread_count()));
        s.add(
            "routes.d/10-a.toml",
            "[trunks.a]\ngateways = [\"sip:10.0.0.1\"]\n[[rules]]\nname = \"r\"\nthen.trunks = [\"a\"]\n",
        );
        let default = s.build().unwrap();
        assert_eq!(s.threads(0).thread_count(), 1);
        let one = s.build().unwrap();
        assert_eq!(s.threads(3).thread_count(), 3);
        assert_eq!(one.version(), default.version());
        assert_eq!(one.rule_count(), default.rule_count());
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
