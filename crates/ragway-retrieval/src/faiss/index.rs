//! FAISS index files: opening any supported index (ragway's own or one Python wrote) for
//! concurrent search, building ragway's own (`IndexIDMap2` over a flat or HNSW index), and
//! reading vectors back out.
//!
//! Every index is held once and searched from many threads at once: flat indexes (ID-mapped or
//! not) and bare IVF-flat ones through the faiss crate's thread-safe (`&self`) search; HNSW
//! and ID-mapped IVF, for which the crate only offers a `&mut` search, through FAISS's C API,
//! which takes the index by `const` pointer (see [`search_const`]). So concurrent searches
//! never wait for each other and the index is in memory once, whatever the number of cores.

use std::fs::File;
use std::io::Read;
use std::os::raw::c_int;
use std::path::Path;

use ::faiss::index::autotune::ParameterSpace;
use ::faiss::index::flat::FlatIndexImpl;
use ::faiss::index::ivf_flat::IVFFlatIndexImpl;
use ::faiss::index::{IndexImpl, SearchResult};
use ::faiss::{ConcurrentIndex, IdMap, Idx, Index, MetricType};
use ragway_core::config::{IndexKind, Metric};

use crate::error::{Error, Result};

/// The index structure found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexType {
    /// `IndexFlatIP` / `IndexFlatL2`.
    Flat,
    /// `IndexHNSWFlat` (and the other HNSW variants).
    Hnsw,
    /// `IndexIVFFlat`.
    IvfFlat,
    /// Anything else FAISS reads, by its four-character code.
    Other(String),
}

/// What an index file holds, read from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    pub index_type: IndexType,
    /// Wrapped in `IndexIDMap`/`IndexIDMap2`: labels are the ids given at add time. Otherwise
    /// labels are positions (0, 1, 2, … in the order the vectors were added).
    pub id_map: bool,
    pub dimension: usize,
    /// Number of vectors (FAISS's `ntotal`).
    pub ntotal: u64,
    pub metric: Metric,
}

/// Settings for [`SearchIndex::open`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// HNSW candidates examined per search; the file's own value when `None`.
    pub ef_search: Option<u32>,
}

/// A loaded index, searchable from many threads at once.
pub struct SearchIndex {
    info: IndexInfo,
    searcher: Searcher,
}

enum Searcher {
    Flat(FlatIndexImpl),
    IdFlat(IdMap<FlatIndexImpl>),
    Ivf(IVFFlatIndexImpl),
    Shared(Shared),
}

/// An index searched through FAISS's C API (HNSW, ID-mapped IVF, anything else FAISS reads).
struct Shared(IndexImpl);

/// One search hit: the label (id or position) and FAISS's distance (inner product, or squared
/// L2 distance).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub label: i64,
    pub distance: f32,
}

impl SearchIndex {
    /// Opens an index file FAISS wrote (`faiss.write_index` in Python, or ragway): flat, HNSW
    /// or IVF-flat, with or without an ID map, inner product or L2.
    pub fn open(path: &Path, options: OpenOptions) -> Result<Self> {
        let info = peek(path)?;
        let index = read(path)?;
        Self::from_index(index, info, options, || read(path))
    }

    /// Wraps an index built in memory (ragway's own layout), `info` describing it.
    pub(crate) fn from_built(
        index: IndexImpl,
        info: IndexInfo,
        options: OpenOptions,
    ) -> Result<Self> {
        Self::from_index(index, info, options, || {
            Err(Error::Faiss {
                message: "index changed type while loading".into(),
            })
        })
    }

    fn from_index(
        index: IndexImpl,
        mut info: IndexInfo,
        options: OpenOptions,
        reload: impl Fn() -> Result<IndexImpl>,
    ) -> Result<Self> {
        // The index itself is the authority on its size and shape.
        info.ntotal = index.ntotal();
        info.dimension = index.d() as usize;
        let searcher = match (&info.index_type, info.id_map) {
            (IndexType::Flat, false) => index.into_flat().map(Searcher::Flat).ok(),
            (IndexType::IvfFlat, false) => index.into_ivf_flat().map(Searcher::Ivf).ok(),
            (IndexType::Flat, true) => index
                .into_id_map()
                .and_then(|m| m.try_cast_inner_index::<FlatIndexImpl>())
                .map(Searcher::IdFlat)
                .ok(),
            _ => Some(Searcher::Shared(Shared::new(index, &info, options)?)),
        };
        // A failed cast consumes the index: load it again and search it the generic way.
        let searcher = match searcher {
            Some(searcher) => searcher,
            None => Searcher::Shared(Shared::new(reload()?, &info, options)?),
        };
        Ok(Self { info, searcher })
    }

    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    pub fn len(&self) -> u64 {
        self.info.ntotal
    }

    pub fn is_empty(&self) -> bool {
        self.info.ntotal == 0
    }

    /// The `k` nearest neighbours of one query (fewer when the index holds fewer vectors).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        let mut hits = self.search_many(query, k)?;
        Ok(hits.pop().unwrap_or_default())
    }

    /// The `k` nearest neighbours of each query; `queries` holds them back to back.
    pub fn search_many(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Hit>>> {
        let d = self.info.dimension;
        if d == 0 || !queries.len().is_multiple_of(d) {
            return Err(Error::Dimension {
                what: "query vector".into(),
                expected: d,
                found: queries.len(),
            });
        }
        let k = k.min(usize::try_from(self.info.ntotal).unwrap_or(usize::MAX));
        let nq = queries.len() / d;
        if k == 0 || nq == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        let result = match &self.searcher {
            Searcher::Flat(index) => ConcurrentIndex::search(index, queries, k),
            Searcher::IdFlat(index) => ConcurrentIndex::search(index, queries, k),
            Searcher::Ivf(index) => ConcurrentIndex::search(index, queries, k),
            Searcher::Shared(shared) => return shared.search(queries, nq, k),
        }
        .map_err(|e| Error::faiss("search", e))?;
        Ok(hits(result, nq, k))
    }
}

fn hits(result: SearchResult, nq: usize, k: usize) -> Vec<Vec<Hit>> {
    (0..nq)
        .map(|q| {
            (q * k..(q + 1) * k)
                .filter_map(|i| {
                    let label = result.labels.get(i)?.get()?;
                    Some(Hit {
                        label: i64::try_from(label).ok()?,
                        distance: *result.distances.get(i)?,
                    })
                })
                .collect()
        })
        .collect()
}

impl Shared {
    fn new(index: IndexImpl, info: &IndexInfo, options: OpenOptions) -> Result<Self> {
        if let (IndexType::Hnsw, Some(ef)) = (&info.index_type, options.ef_search) {
            set_ef_search(&index, ef)?;
        }
        Ok(Self(index))
    }

    fn search(&self, queries: &[f32], nq: usize, k: usize) -> Result<Vec<Vec<Hit>>> {
        let mut distances = vec![0.0_f32; nq * k];
        let mut labels = vec![-1_i64; nq * k];
        let code = search_const(&self.0, queries, nq, k, &mut distances, &mut labels);
        if code != 0 {
            return Err(Error::Faiss {
                message: format!("search failed (FAISS error code {code})"),
            });
        }
        Ok(labels
            .chunks(k)
            .zip(distances.chunks(k))
            .map(|(labels, distances)| {
                labels
                    .iter()
                    .zip(distances)
                    // FAISS pads with -1 when fewer than k vectors qualify.
                    .filter(|(label, _)| **label >= 0)
                    .map(|(label, distance)| Hit {
                        label: *label,
                        distance: *distance,
                    })
                    .collect()
            })
            .collect())
    }
}

/// `faiss::Index::search` through the C API, with the index shared (`&`), not exclusive.
///
/// This is the one `unsafe` block of ragway. The faiss crate asks `&mut` for these index types
/// only because its generic wrapper does; in FAISS itself `Index::search` is a `const` member,
/// and FAISS documents concurrent searches of one CPU index as thread-safe (HNSW and IVF keep
/// their visited sets and heaps per call). Without this, each searching thread would need its
/// own copy of the index in memory.
#[allow(unsafe_code)]
fn search_const(
    index: &IndexImpl,
    queries: &[f32],
    nq: usize,
    k: usize,
    distances: &mut [f32],
    labels: &mut [i64],
) -> c_int {
    assert!(
        queries.len() == nq * index.d() as usize
            && distances.len() == nq * k
            && labels.len() == nq * k,
        "search buffers do not match nq = {nq}, k = {k}"
    );
    let (nq, k) = (nq as i64, k as i64);
    // SAFETY: `index` is a live FAISS index for the whole call (borrowed); `queries` holds
    // nq * d floats and the two outputs nq * k entries each, as checked above, and nothing
    // else writes them meanwhile (`&mut`). The C function takes the index as `const` and
    // FAISS's CPU search is safe to run from several threads at once.
    unsafe {
        faiss_sys::faiss_Index_search(
            index.inner_ptr(),
            nq,
            queries.as_ptr(),
            k,
            distances.as_mut_ptr(),
            labels.as_mut_ptr(),
        )
    }
}

/// Sets how many candidates an HNSW index (ID-mapped or not) examines per search.
pub(crate) fn set_ef_search(index: &IndexImpl, ef_search: u32) -> Result<()> {
    ParameterSpace::new()
        .and_then(|space| space.set_index_parameter(index, "efSearch", ef_search))
        .map_err(|e| Error::faiss("setting efSearch", e))
}

/// Reads an index file.
pub(crate) fn read(path: &Path) -> Result<IndexImpl> {
    ::faiss::read_index(utf8(path)?)
        .map_err(|e| Error::faiss(&format!("reading {}", path.display()), e))
}

/// Writes an index file (the caller makes it durable).
pub(crate) fn write(index: &IndexImpl, path: &Path) -> Result<()> {
    ::faiss::write_index(index, utf8(path)?)
        .map_err(|e| Error::faiss(&format!("writing {}", path.display()), e))
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::invalid(path, "FAISS needs a UTF-8 file path"))
}

pub(crate) fn metric_type(metric: Metric) -> MetricType {
    match metric {
        Metric::InnerProduct => MetricType::InnerProduct,
        Metric::L2 => MetricType::L2,
    }
}

/// A new, empty index in ragway's layout: `IndexIDMap2` (labels = chunk ids) over a flat or
/// HNSW index.
pub(crate) fn new_store_index(
    dimension: usize,
    metric: Metric,
    kind: IndexKind,
    hnsw_m: u32,
) -> Result<IndexImpl> {
    let description = match kind {
        IndexKind::Flat => "IDMap2,Flat".to_owned(),
        IndexKind::Hnsw => format!("IDMap2,HNSW{},Flat", hnsw_m.max(2)),
    };
    let d = u32::try_from(dimension).map_err(|_| Error::Faiss {
        message: format!("dimension {dimension} is too large"),
    })?;
    ::faiss::index_factory(d, &description, metric_type(metric))
        .map_err(|e| Error::faiss(&format!("creating a {description} index"), e))
}

/// Describes an index in ragway's layout.
pub(crate) fn store_info(
    dimension: usize,
    vectors: u64,
    metric: Metric,
    kind: IndexKind,
) -> IndexInfo {
    IndexInfo {
        index_type: match kind {
            IndexKind::Flat => IndexType::Flat,
            IndexKind::Hnsw => IndexType::Hnsw,
        },
        id_map: true,
        dimension,
        ntotal: vectors,
        metric,
    }
}

/// Adds vectors (back to back) with their labels.
pub(crate) fn add(index: &mut IndexImpl, vectors: &[f32], labels: &[i64]) -> Result<()> {
    let ids: Vec<Idx> = labels.iter().map(|&l| Idx::new(l.unsigned_abs())).collect();
    index
        .add_with_ids(vectors, &ids)
        .map_err(|e| Error::faiss("adding vectors", e))
}

/// Removes vectors by label; returns how many went.
pub(crate) fn remove(index: &mut IndexImpl, labels: &[i64]) -> Result<usize> {
    if labels.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Idx> = labels.iter().map(|&l| Idx::new(l.unsigned_abs())).collect();
    let selector =
        ::faiss::selector::IdSelector::batch(&ids).map_err(|e| Error::faiss("selecting ids", e))?;
    index
        .remove_ids(&selector)
        .map_err(|e| Error::faiss("removing vectors", e))
}

/// Every vector of an index file in storage order, with its label: what
/// [`FaissStore::adopt`](super::FaissStore::adopt) imports.
pub struct StoredVectors {
    pub info: IndexInfo,
    /// The label search returns for each position (the id map, or the position itself).
    pub labels: Vec<i64>,
    /// `labels.len() × info.dimension` floats.
    pub vectors: Vec<f32>,
}

/// Reads every vector back out of an index file (flat, HNSW-flat, IVF-flat, ID-mapped or not).
pub fn read_vectors(path: &Path) -> Result<StoredVectors> {
    let info = peek(path)?;
    let index = read(path)?;
    let n = usize::try_from(info.ntotal).map_err(|_| Error::invalid(path, "too many vectors"))?;
    let mut vectors = vec![0f32; n * info.dimension];
    let cannot = |e| {
        Error::invalid(
            path,
            format!("cannot read the vectors back out of this index ({e})"),
        )
    };
    let labels = if info.id_map {
        let map = index.into_id_map().map_err(cannot)?;
        let labels: Vec<i64> = map.id_map().iter().map(|l| l.to_native()).collect();
        let mut inner: IndexImpl = map.try_into_inner().map_err(cannot)?;
        if n > 0 {
            reconstruct(&mut inner, &mut vectors).map_err(cannot)?;
        }
        labels
    } else {
        let mut index = index;
        if n > 0 {
            reconstruct(&mut index, &mut vectors).map_err(cannot)?;
        }
        (0..n as i64).collect()
    };
    if labels.len() != n {
        return Err(Error::invalid(
            path,
            format!("id map holds {} ids for {n} vectors", labels.len()),
        ));
    }
    Ok(StoredVectors {
        info,
        labels,
        vectors,
    })
}

fn reconstruct(index: &mut IndexImpl, out: &mut [f32]) -> ::faiss::error::Result<()> {
    let d = index.d() as usize;
    let n = out.len() / d.max(1);
    index.reconstruct_n(Idx::new(0), n, out)
}

/// Reads the header of an index file: its type, dimension, size and metric.
pub fn peek(path: &Path) -> Result<IndexInfo> {
    let mut head = Vec::with_capacity(96);
    File::open(path)
        .map_err(|e| Error::io(path, e))?
        .take(96)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    let bad = |message: &str| Error::invalid(path, format!("not a FAISS index file: {message}"));
    let fourcc = |at: usize| -> Option<String> {
        head.get(at..at + 4)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    let code = fourcc(0).ok_or_else(|| bad("too short"))?;
    let (dimension, vectors, metric, header_len) =
        header(&head, 4).ok_or_else(|| bad("too short"))?;
    let metric = match metric {
        0 => Metric::InnerProduct,
        1 => Metric::L2,
        other => {
            return Err(Error::invalid(
                path,
                format!("metric {other} is not supported (only inner product and L2)"),
            ));
        }
    };
    let id_map = matches!(code.as_str(), "IxMp" | "IxM2");
    let inner = if id_map {
        fourcc(4 + header_len).ok_or_else(|| bad("too short"))?
    } else {
        code
    };
    let index_type = match inner.as_str() {
        "IxFI" | "IxF2" | "IxFl" => IndexType::Flat,
        "IwFl" => IndexType::IvfFlat,
        code if code.starts_with("IHN") => IndexType::Hnsw,
        other => IndexType::Other(other.to_owned()),
    };
    Ok(IndexInfo {
        index_type,
        id_map,
        dimension: usize::try_from(dimension).map_err(|_| bad("negative dimension"))?,
        ntotal: u64::try_from(vectors).map_err(|_| bad("negative size"))?,
        metric,
    })
}

/// FAISS's common header at `at`: d (i32), ntotal (i64), two unused i64, is_trained (u8),
/// metric (i32) and, for metrics past L2, a float argument. Returns (d, ntotal, metric, length).
fn header(bytes: &[u8], at: usize) -> Option<(i32, i64, i32, usize)> {
    let i32_at = |o: usize| {
        bytes
            .get(at + o..at + o + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_le_bytes)
    };
    let d = i32_at(0)?;
    let ntotal = bytes
        .get(at + 4..at + 12)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_le_bytes)?;
    let metric = i32_at(29)?;
    let len = if metric > 1 { 37 } else { 33 };
    Some((d, ntotal, metric, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit vectors, so that each is its own nearest neighbour under both metrics.
    fn vectors(n: usize, d: usize) -> Vec<f32> {
        let raw: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919 % 1000) as f32 / 1000.0) - 0.5)
            .collect();
        raw.chunks(d)
            .flat_map(|v| {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(move |x| x / norm)
            })
            .collect()
    }

    #[test]
    fn store_indexes_round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, metric) in [
            (IndexKind::Flat, Metric::InnerProduct),
            (IndexKind::Flat, Metric::L2),
            (IndexKind::Hnsw, Metric::InnerProduct),
            (IndexKind::Hnsw, Metric::L2),
        ] {
            let d = 8;
            let data = vectors(50, d);
            let labels: Vec<i64> = (0..50).map(|i| 1000 + i * 3).collect();
            let mut index = new_store_index(d, metric, kind, 16).unwrap();
            add(&mut index, &data, &labels).unwrap();
            let path = dir.path().join(format!("{kind:?}-{metric:?}.faiss"));
            write(&index, &path).unwrap();

            let info = peek(&path).unwrap();
            assert_eq!(info, store_info(d, 50, metric, kind));
            let loaded = SearchIndex::open(
                &path,
                OpenOptions {
                    ef_search: Some(64),
                },
            )
            .unwrap();
            let hits = loaded.search(&data[3 * d..4 * d], 3).unwrap();
            assert_eq!(hits.len(), 3);
            assert_eq!(hits[0].label, 1009, "{kind:?} {metric:?}");

            let stored = read_vectors(&path).unwrap();
            assert_eq!(stored.labels, labels);
            assert_eq!(stored.vectors, data);
        }
    }

    #[test]
    fn removal_and_empty_searches() {
        let d = 4;
        let data = vectors(10, d);
        let labels: Vec<i64> = (1..=10).collect();
        let mut index = new_store_index(d, Metric::L2, IndexKind::Flat, 16).unwrap();
        add(&mut index, &data, &labels).unwrap();
        assert_eq!(remove(&mut index, &[1, 2, 99]).unwrap(), 2);
        assert_eq!(index.ntotal(), 8);
        let search = SearchIndex::from_built(
            index,
            store_info(d, 8, Metric::L2, IndexKind::Flat),
            OpenOptions::default(),
        )
        .unwrap();
        let hits = search.search(&data[..d], 20).unwrap();
        assert_eq!(hits.len(), 8);
        assert!(hits.iter().all(|h| h.label > 2));
        assert!(search.search(&data[..d], 0).unwrap().is_empty());
        assert!(search.search(&data[..3], 1).is_err());
    }

    #[test]
    fn a_file_that_is_not_an_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.faiss");
        std::fs::write(&path, b"hello").unwrap();
        assert!(
            peek(&path)
                .unwrap_err()
                .to_string()
                .contains("not a FAISS index")
        );
        std::fs::write(&path, vec![7u8; 200]).unwrap();
        assert!(SearchIndex::open(&path, OpenOptions::default()).is_err());
    }

    #[test]
    fn one_hnsw_index_answers_many_threads_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (n, d) = (2000, 16);
        let data = vectors(n, d);
        let labels: Vec<i64> = (0..n as i64).map(|i| 7 + i * 2).collect();
        let mut index = new_store_index(d, Metric::InnerProduct, IndexKind::Hnsw, 16).unwrap();
        add(&mut index, &data, &labels).unwrap();
        let path = dir.path().join("hnsw.faiss");
        write(&index, &path).unwrap();
        let index = SearchIndex::open(
            &path,
            OpenOptions {
                ef_search: Some(64),
            },
        )
        .unwrap();
        assert!(matches!(index.searcher, Searcher::Shared(_)));
        let sequential: Vec<Vec<Hit>> = data
            .chunks(d)
            .take(200)
            .map(|q| index.search(q, 5).unwrap())
            .collect();
        assert!(
            sequential
                .iter()
                .all(|hits| hits.len() == 5 && hits.iter().all(|h| labels.contains(&h.label)))
        );
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        data.chunks(d)
                            .take(200)
                            .map(|q| index.search(q, 5).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for worker in workers {
                assert_eq!(worker.join().unwrap(), sequential);
            }
        });
    }
}
