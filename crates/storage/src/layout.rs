use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use wharf_oci::{Digest, RepositoryName, Tag};

use crate::{Error, Result};

/// Paths of the distribution registry's layout under `<data>/docker/registry/v2`.
#[derive(Debug, Clone)]
pub struct Layout {
    v2: PathBuf,
    tmp: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            v2: data_dir.join("docker/registry/v2"),
            tmp: data_dir.join("tmp"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.v2
    }

    pub fn blobs_root(&self) -> PathBuf {
        self.v2.join("blobs")
    }

    pub fn repositories_root(&self) -> PathBuf {
        self.v2.join("repositories")
    }

    /// Where temporary files are written before being renamed into place; on
    /// the same filesystem so that the rename is atomic.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    pub fn blob_dir(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.v2
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    pub fn blob_data(&self, d: &Digest) -> PathBuf {
        self.blob_dir(d).join("data")
    }

    pub fn repo_dir(&self, repo: &RepositoryName) -> PathBuf {
        self.v2.join("repositories").join(repo.as_str())
    }

    pub fn layer_link(&self, repo: &RepositoryName, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_layers")
            .join(d.algorithm().as_str())
            .join(d.hex())
            .join("link")
    }

    pub fn revision_link(&self, repo: &RepositoryName, d: &Digest) -> PathBuf {
        self.repo_dir(repo)
            .join("_manifests/revisions")
            .join(d.algorithm().as_str())
            .join(d.hex())
            .join("link")
    }

    pub fn tags_dir(&self, repo: &RepositoryName) -> PathBuf {
        self.repo_dir(repo).join("_manifests/tags")
    }

    pub fn tag_dir(&self, repo: &RepositoryName, tag: &Tag) -> PathBuf {
        self.tags_dir(repo).join(tag.as_str())
    }

    pub fn tag_current_link(&self, repo: &RepositoryName, tag: &Tag) -> PathBuf {
        self.tag_dir(repo, tag).join("current/link")
    }

    pub fn tag_index_link(&self, repo: &RepositoryName, tag: &Tag, d: &Digest) -> PathBuf {
        self.tag_dir(repo, tag)
            .join("index")
            .join(d.algorithm().as_str())
            .join(d.hex())
            .join("link")
    }

    pub fn uploads_dir(&self, repo: &RepositoryName) -> PathBuf {
        self.repo_dir(repo).join("_uploads")
    }

    pub fn upload_dir(&self, repo: &RepositoryName, id: &uuid::Uuid) -> PathBuf {
        self.uploads_dir(repo).join(id.to_string())
    }
}

/// Blocking file operations on a [`Layout`]. Callers run them on the blocking
/// pool; each is a handful of syscalls.
#[derive(Debug, Clone)]
pub struct Store {
    pub layout: Layout,
}

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store> {
        let layout = Layout::new(data_dir);
        fs::create_dir_all(layout.root()).map_err(Error::io)?;
        fs::create_dir_all(layout.tmp_dir()).map_err(Error::io)?;
        Ok(Store { layout })
    }

    /// Reads a link file: the text `algo:hex`. A missing or malformed link reads as absent.
    pub fn read_link(&self, path: &Path) -> Result<Option<Digest>> {
        match fs::read_to_string(path) {
            Ok(s) => Ok(Digest::parse(s.trim()).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                Ok(None)
            }
            Err(e) => Err(Error::io(e)),
        }
    }

    /// Writes a link file atomically (temp file and rename), so a reader sees
    /// the old target or the new one, never a torn write.
    pub fn write_link(&self, path: &Path, d: &Digest) -> Result<()> {
        let dir = path.parent().expect("link paths have a parent");
        fs::create_dir_all(dir).map_err(Error::io)?;
        let tmp = dir.join(format!(".link.{}", uuid::Uuid::new_v4()));
        let res = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(d.to_string().as_bytes())?;
            fs::rename(&tmp, path)
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(Error::io)
    }

    /// Removes a link file and then each directory above it that became empty,
    /// up to (not including) `stop`.
    pub fn remove_link(&self, path: &Path, stop: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(e)),
        }
        remove_empty_parents(path.parent(), stop);
        Ok(())
    }

    pub fn remove_tree(&self, dir: &Path) -> Result<()> {
        match fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(e)),
        }
    }

    pub fn blob_size(&self, d: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.layout.blob_data(d)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(e)),
        }
    }

    pub fn open_blob(&self, d: &Digest) -> Result<Option<(fs::File, u64)>> {
        match fs::File::open(self.layout.blob_data(d)) {
            Ok(f) => {
                let len = f.metadata().map_err(Error::io)?.len();
                Ok(Some((f, len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(e)),
        }
    }

    /// Reads a whole blob that is known to be small (a manifest).
    pub fn read_blob(&self, d: &Digest) -> Result<Option<Vec<u8>>> {
        match fs::read(self.layout.blob_data(d)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(e)),
        }
    }

    /// Moves a complete, verified, fsynced file into the blob path of `d` and
    /// fsyncs the directory so the rename survives a crash.
    pub fn place_blob(&self, src: &Path, d: &Digest) -> Result<()> {
        let dir = self.layout.blob_dir(d);
        fs::create_dir_all(&dir).map_err(Error::io)?;
        fs::rename(src, dir.join("data")).map_err(Error::io)?;
        fs::File::open(&dir)
            .and_then(|f| f.sync_all())
            .map_err(Error::io)
    }

    /// Deletes a blob's data file and its directory.
    pub fn remove_blob(&self, d: &Digest) -> Result<()> {
        let dir = self.layout.blob_dir(d);
        self.remove_link(&dir.join("data"), &self.layout.blobs_root())
    }

    /// Writes `bytes` to a fsynced temporary file, ready for [`Store::place_blob`].
    pub fn write_temp(&self, bytes: &[u8]) -> Result<TempFile> {
        let path = self.layout.tmp_dir().join(uuid::Uuid::new_v4().to_string());
        let guard = TempFile(path);
        let mut f = fs::File::create(&guard.0).map_err(Error::io)?;
        f.write_all(bytes).map_err(Error::io)?;
        f.sync_all().map_err(Error::io)?;
        Ok(guard)
    }

    /// Tags that have a `current/link` in `repo`, sorted.
    pub fn list_tags(&self, repo: &RepositoryName) -> Result<Option<Vec<String>>> {
        let dir = self.layout.tags_dir(repo);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(e)),
        };
        let mut tags = Vec::new();
        for entry in rd {
            let entry = entry.map_err(Error::io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("current/link").exists() {
                tags.push(name);
            }
        }
        tags.sort();
        Ok(Some(tags))
    }

    pub fn repo_exists(&self, repo: &RepositoryName) -> bool {
        self.layout.repo_dir(repo).is_dir()
    }
}

/// A file that is removed when dropped unless it was moved away first.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub(crate) fn remove_empty_parents(mut dir: Option<&Path>, stop: &Path) {
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_distribution() {
        let l = Layout::new(Path::new("/d"));
        let d = Digest::sha256_of(b"x");
        let r = RepositoryName::parse("lib/app").unwrap();
        let hex = d.hex();
        assert_eq!(
            l.blob_data(&d),
            PathBuf::from(format!(
                "/d/docker/registry/v2/blobs/sha256/{}/{hex}/data",
                &hex[..2]
            ))
        );
        assert_eq!(
            l.layer_link(&r, &d),
            PathBuf::from(format!(
                "/d/docker/registry/v2/repositories/lib/app/_layers/sha256/{hex}/link"
            ))
        );
        let t = Tag::parse("v1").unwrap();
        assert_eq!(
            l.tag_index_link(&r, &t, &d),
            PathBuf::from(format!("/d/docker/registry/v2/repositories/lib/app/_manifests/tags/v1/index/sha256/{hex}/link"))
        );
    }

    #[test]
    fn links_round_trip_and_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let r = RepositoryName::parse("a/b").unwrap();
        let d = Digest::sha256_of(b"y");
        let p = s.layout.layer_link(&r, &d);
        s.write_link(&p, &d).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), d.to_string());
        assert_eq!(s.read_link(&p).unwrap(), Some(d.clone()));
        s.remove_link(&p, &s.layout.repo_dir(&r)).unwrap();
        assert!(!p.parent().unwrap().exists());
        assert!(s.layout.repo_dir(&r).exists());
    }
}
