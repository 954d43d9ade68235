//! The packed GEMM driver: `C <- A * B + beta * C`, then bias and ReLU.
//!
//! The loop nest follows the BLIS design (Van Zee and van de Geijn, "BLIS: A
//! Framework for Rapidly Instantiating BLAS Functionality", ACM TOMS 2015).
//! A is packed once into panels of `MR` rows; C is cut into tasks of at most
//! `NC` columns (and, when there are too few of those to keep every worker
//! busy, into row ranges too); each task packs its columns of B, `KC` rows
//! at a time, into panels of `NR` columns and runs the micro-kernel over
//! every `MR x NR` tile. A [`PackB`] source may compute B on the fly, which
//! is how a convolution reads its input through im2col without writing the
//! column matrix.
//!
//! Each element of C is summed over `k` in the same order whatever the
//! number of workers or tasks, so results do not depend on the thread count.

use rayon::prelude::*;

use super::kernels::{MAX_MR, MAX_NR, MicroKernel, Panel, TileStore};

/// Rows of B (depth) per packed block: a `KC x 32` panel of B is 32 KiB and
/// stays in a 48 KiB L1 while the panels of A stream past it.
const KC: usize = 256;

/// Columns of C per task: a `KC x NC` block of packed B is 256 KiB, which
/// sits in L2 next to the packed A of the largest GoogLeNet layers.
const NC: usize = 256;

/// Products with fewer multiply-accumulates than this run on the calling
/// thread: below it, handing tiles to another core costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// The position of each element `(row, col)` of a matrix in a slice, for
/// matrices whose columns run across several images. Column `col` belongs
/// to image `col / cols_per_image`, which starts `image_stride` elements
/// after the previous one. A plain strided matrix is one image.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    pub cols_per_image: usize,
    pub image_stride: usize,
}

impl Layout {
    /// Describes a plain `rows x cols` matrix with the given strides.
    pub fn matrix(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        Layout { rows, cols, row_stride, col_stride, cols_per_image: cols.max(1), image_stride: 0 }
    }

    /// `images` row-major `rows x cols_per_image` blocks placed side by
    /// side as one `rows x (images * cols_per_image)` matrix.
    pub fn batched(rows: usize, cols_per_image: usize, images: usize, row_stride: usize, image_stride: usize) -> Self {
        Layout { rows, cols: cols_per_image * images, row_stride, col_stride: 1, cols_per_image, image_stride }
    }

    #[inline]
    fn offset(&self, row: usize, col: usize) -> usize {
        let (image, col) = (col / self.cols_per_image, col % self.cols_per_image);
        image * self.image_stride + row * self.row_stride + col * self.col_stride
    }

    /// Panics unless every element lies inside a slice of `len` elements.
    fn assert_fits(&self, len: usize, what: &str) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        let last = self.offset(self.rows - 1, self.cols - 1).max(self.offset(self.rows - 1, self.cols_per_image - 1));
        assert!(last < len, "packed gemm: {what} {self:?} needs {} elements, slice has {len}", last + 1);
    }

    /// True when columns `first..first + count` are adjacent in memory.
    fn contiguous(&self, first: usize, count: usize) -> bool {
        self.col_stride == 1 && first / self.cols_per_image == (first + count - 1) / self.cols_per_image
    }
}

/// A source of B that packs itself.
pub(crate) trait PackB: Sync {
    /// Writes rows `k0..k0 + kc` of columns `j0..j0 + width` of B into `dst`,
    /// row `p` at `dst[p * nr..(p + 1) * nr]`, with zeros in the columns
    /// from `width` to `nr`.
    fn pack(&self, k0: usize, kc: usize, j0: usize, width: usize, nr: usize, dst: &mut [f32]);

    /// Returns the same rows and columns as a panel read in place, when B is
    /// stored so that the micro-kernel can read it without packing.
    fn in_place(&self, _k0: usize, _j0: usize, _width: usize, _nr: usize) -> Option<Panel> {
        None
    }
}

/// B read from a slice through a [`Layout`].
pub(crate) struct StridedB<'a> {
    pub data: &'a [f32],
    pub layout: Layout,
}

impl<'a> StridedB<'a> {
    /// # Panics
    /// If `layout` addresses an element outside `data`.
    pub fn new(data: &'a [f32], layout: Layout) -> Self {
        layout.assert_fits(data.len(), "B");
        StridedB { data, layout }
    }
}

impl PackB for StridedB<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, width: usize, nr: usize, dst: &mut [f32]) {
        let l = &self.layout;
        for (p, row) in dst[..kc * nr].chunks_exact_mut(nr).enumerate() {
            row[width..].fill(0.0);
            let mut j = j0;
            while j < j0 + width {
                // One run of columns inside a single image.
                let run = (l.cols_per_image - j % l.cols_per_image).min(j0 + width - j);
                let start = l.offset(k0 + p, j);
                let out = &mut row[j - j0..j - j0 + run];
                if l.col_stride == 1 {
                    out.copy_from_slice(&self.data[start..start + run]);
                } else {
                    for (o, v) in out.iter_mut().zip(self.data[start..].iter().step_by(l.col_stride)) {
                        *o = *v;
                    }
                }
                j += run;
            }
        }
    }

    fn in_place(&self, k0: usize, j0: usize, width: usize, nr: usize) -> Option<Panel> {
        let l = &self.layout;
        // With a depth of zero, B has no row to point at.
        let whole_panel = k0 < l.rows && width == nr && l.contiguous(j0, width);
        // Rows whose distance in bytes shares a power of two above 128 with
        // 4 KiB fall into few L1 sets and evict each other, so those are
        // packed. A single row never applies its stride, which may be huge.
        let spread = l.rows == 1 || gcd(l.row_stride * 4, 4096) <= 128;
        (whole_panel && spread).then(|| Panel {
            ptr: self.data[l.offset(k0, j0)..].as_ptr(),
            row_stride: l.row_stride,
            col_stride: 1,
        })
    }
}

pub(super) fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The operations applied to each output element after the product.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Epilogue<'a> {
    /// Factor of the old C; 0 leaves C unread.
    pub beta: f32,
    /// One value per row of C.
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
}

/// C as a raw pointer, so that workers can write disjoint tiles of it.
#[derive(Clone, Copy)]
struct SharedC(*mut f32);

// SAFETY: tasks write disjoint sets of C's elements (each tile belongs to one
// task), and the slice outlives the parallel loop that uses the pointer.
unsafe impl Send for SharedC {}
unsafe impl Sync for SharedC {}

/// One unit of parallel work: rows `rows` and columns `cols` of C.
#[derive(Clone, Debug)]
struct Task {
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
}

/// Computes `C = relu(A * B + beta * C + bias)` for `A` of `m x k` read
/// through `a_layout`, `B` of `k x n` from `b` and `C` of `m x n` written
/// through `c_layout`. Splits the work across rayon workers when `parallel`
/// is true, the product is large, and the caller is not itself a worker.
///
/// # Panics
/// If a layout does not fit its slice or the dimensions disagree.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_packed(
    kernel: MicroKernel,
    a: &[f32],
    a_layout: Layout,
    b: &dyn PackB,
    c: &mut [f32],
    c_layout: Layout,
    epilogue: Epilogue<'_>,
    parallel: bool,
) {
    // SAFETY: `c` is an initialised slice borrowed mutably for the call.
    unsafe { gemm_packed_raw(kernel, a, a_layout, b, c.as_mut_ptr(), c.len(), c_layout, epilogue, parallel) }
}

/// [`gemm_packed`] into C given as a pointer, which with `beta = 0` may
/// point at uninitialised memory: every element `c_layout` addresses is
/// then written and none is read.
///
/// # Safety
/// `c` must be valid for writes of `c_len` elements (and for reads when
/// `beta != 0`), and nothing else may access them during the call.
///
/// # Panics
/// As [`gemm_packed`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed_raw(
    kernel: MicroKernel,
    a: &[f32],
    a_layout: Layout,
    b: &dyn PackB,
    c: *mut f32,
    c_len: usize,
    c_layout: Layout,
    epilogue: Epilogue<'_>,
    parallel: bool,
) {
    let (m, k, n) = (a_layout.rows, a_layout.cols, c_layout.cols);
    assert_eq!(c_layout.rows, m, "packed gemm: C has {} rows, A has {m}", c_layout.rows);
    assert!(kernel.mr <= MAX_MR, "micro-kernel has more rows than the driver's buffers");
    assert!(kernel.nr <= MAX_NR, "micro-kernel has more columns than the driver's buffers");
    if let Some(bias) = epilogue.bias {
        assert_eq!(bias.len(), m, "packed gemm: bias has {} values, C has {m} rows", bias.len());
    }
    if m == 0 || n == 0 {
        return;
    }
    a_layout.assert_fits(a.len(), "A");
    c_layout.assert_fits(c_len, "C");

    let a_panels = APanels::new(a, a_layout, kernel.mr);
    let threads = rayon::current_num_threads();
    let split = parallel && threads > 1 && rayon::current_thread_index().is_none() && m * k * n >= PARALLEL_MIN_MACS;
    let tasks = plan_tasks(m, n, kernel, if split { threads } else { 1 });
    let shared_c = SharedC(c);
    let run = |task: &Task| {
        // SAFETY: `c_layout` fits the `c_len` elements at `c` (checked
        // above), the tasks cover disjoint tiles, and the caller gives this
        // call sole access to C.
        unsafe { run_task(kernel, &a_panels, k, b, shared_c, c_layout, epilogue, task) }
    };
    if split {
        tasks.par_iter().for_each(run);
    } else {
        tasks.iter().for_each(run);
    }
}

/// Cuts C into tasks: column blocks of at most `NC`, and row blocks too
/// when there are fewer than two column blocks per worker.
fn plan_tasks(m: usize, n: usize, kernel: MicroKernel, workers: usize) -> Vec<Task> {
    let col_panels = n.div_ceil(kernel.nr);
    let panels_per_task = (NC / kernel.nr).min(col_panels.div_ceil(workers)).max(1);
    let col_tasks = col_panels.div_ceil(panels_per_task);
    let row_panels = m.div_ceil(kernel.mr);
    let row_tasks = if workers == 1 { 1 } else { (2 * workers).div_ceil(col_tasks).clamp(1, row_panels) };
    let rows_per_task = row_panels.div_ceil(row_tasks) * kernel.mr;
    let cols_per_task = panels_per_task * kernel.nr;
    let mut tasks = Vec::with_capacity(row_tasks * col_tasks);
    for first_col in (0..n).step_by(cols_per_task) {
        for first_row in (0..m).step_by(rows_per_task) {
            tasks.push(Task {
                rows: first_row..(first_row + rows_per_task).min(m),
                cols: first_col..(first_col + cols_per_task).min(n),
            });
        }
    }
    tasks
}

/// The panels of A the micro-kernel reads. Full panels of a plain matrix
/// are read in place: A is usually a weight matrix read once per column
/// panel, so copying it would cost about as much as reading it. The rest
/// (a last panel of fewer than `mr` rows, and every panel of an A whose
/// columns run across images) is packed: for each block of `KC` columns
/// starting at `k0`, panels of `mr` rows follow each other from
/// `k0 * packed_rows`, each holding for each step `p` the `mr` values
/// `A[first + q * mr + i][k0 + p]`, with zeros past the last row.
struct APanels<'a> {
    a: &'a [f32],
    layout: Layout,
    mr: usize,
    /// First row of the packed panels; rows above it are read in place.
    first_packed: usize,
    /// Rows of the packed part, padded to a multiple of `mr`.
    packed_rows: usize,
    packed: Vec<f32>,
}

impl<'a> APanels<'a> {
    fn new(a: &'a [f32], layout: Layout, mr: usize) -> Self {
        let (m, k) = (layout.rows, layout.cols);
        let plain = layout.cols_per_image == layout.cols;
        let first_packed = if plain { m / mr * mr } else { 0 };
        let packed_rows = (m - first_packed).div_ceil(mr) * mr;
        let mut packed = vec![0.0; packed_rows * k];
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            let block = &mut packed[k0 * packed_rows..(k0 + kc) * packed_rows];
            for (panel, first_row) in block.chunks_exact_mut(mr * kc).zip((first_packed..m).step_by(mr)) {
                let rows = mr.min(m - first_row);
                for p in 0..kc {
                    let column = &a[layout.offset(first_row, k0 + p)..];
                    for (i, value) in panel[p * mr..p * mr + rows].iter_mut().enumerate() {
                        *value = column[i * layout.row_stride];
                    }
                }
            }
        }
        APanels { a, layout, mr, first_packed, packed_rows, packed }
    }

    /// Returns the panel of rows `i0..i0 + mr` and columns `k0..k0 + kc`.
    fn panel(&self, i0: usize, k0: usize, kc: usize) -> Panel {
        if i0 < self.first_packed {
            let l = &self.layout;
            return Panel {
                ptr: self.a[l.offset(i0, k0)..].as_ptr(),
                row_stride: l.row_stride,
                col_stride: l.col_stride,
            };
        }
        let q = (i0 - self.first_packed) / self.mr;
        let start = k0 * self.packed_rows + q * self.mr * kc;
        Panel { ptr: self.packed[start..start + self.mr * kc].as_ptr(), row_stride: 1, col_stride: self.mr }
    }
}

/// Runs one task: packs its columns of B block by block (or reads them in
/// place) and multiplies every tile.
///
/// # Safety
/// `c` must point at a slice that `c_layout` fits, and no other thread may
/// touch the task's tiles meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_task(
    kernel: MicroKernel,
    a_panels: &APanels<'_>,
    k: usize,
    b: &dyn PackB,
    c: SharedC,
    c_layout: Layout,
    epilogue: Epilogue<'_>,
    task: &Task,
) {
    let (mr, nr) = (kernel.mr, kernel.nr);
    let panels = task.cols.len().div_ceil(nr);
    let mut packed_b = vec![0.0f32; KC.min(k.max(1)) * panels * nr];
    let mut b_panels = Vec::with_capacity(panels);
    // A depth of zero still runs one pass, so that C gets beta * C, the bias and the ReLU.
    let blocks: Vec<(usize, usize)> =
        if k == 0 { vec![(0, 0)] } else { (0..k).step_by(KC).map(|k0| (k0, KC.min(k - k0))).collect() };
    let last_block = blocks.len() - 1;
    for (index, &(k0, kc)) in blocks.iter().enumerate() {
        b_panels.clear();
        for (slot, j0) in packed_b.chunks_exact_mut(KC.min(k.max(1)) * nr).zip(task.cols.clone().step_by(nr)) {
            let cols = nr.min(task.cols.end - j0);
            let panel = b.in_place(k0, j0, cols, nr).unwrap_or_else(|| {
                b.pack(k0, kc, j0, cols, nr, &mut slot[..kc * nr]);
                Panel { ptr: slot.as_ptr(), row_stride: nr, col_stride: 1 }
            });
            b_panels.push((j0, cols, panel));
        }
        let beta = if index == 0 { epilogue.beta } else { 1.0 };
        let finishing = index == last_block;
        for &(j0, cols, b_panel) in &b_panels {
            for i0 in task.rows.clone().step_by(mr) {
                let rows = mr.min(task.rows.end - i0);
                let bias = match (finishing, epilogue.bias) {
                    (true, Some(bias)) => bias[i0..].as_ptr(),
                    _ => std::ptr::null(),
                };
                let store = TileStore { rows, cols, beta, bias, relu: finishing && epilogue.relu };
                let a_panel = a_panels.panel(i0, k0, kc);
                // SAFETY: both panels cover kc steps of the tile, the tile
                // lies inside C (forwarded from the caller), and the kernel
                // was chosen for a supported CPU.
                unsafe { store_tile(kernel, kc, a_panel, b_panel, c, c_layout, i0, j0, &store) };
            }
        }
    }
}

/// Runs the micro-kernel for the tile at `(i0, j0)`, straight into C when
/// the tile's columns are adjacent in memory, else through a scratch tile
/// gathered from and scattered back to C.
///
/// # Safety
/// As [`run_task`].
#[allow(clippy::too_many_arguments)]
unsafe fn store_tile(
    kernel: MicroKernel,
    kc: usize,
    a_panel: Panel,
    b_panel: Panel,
    c: SharedC,
    c_layout: Layout,
    i0: usize,
    j0: usize,
    store: &TileStore,
) {
    let (rows, cols) = (store.rows, store.cols);
    if c_layout.contiguous(j0, cols) {
        // SAFETY: the tile's rows x cols elements lie inside C.
        unsafe {
            let tile = c.0.add(c_layout.offset(i0, j0));
            (kernel.run)(kc, a_panel, b_panel, tile, c_layout.row_stride, store);
        }
        return;
    }
    // Offsets of the tile's columns in its first row; row i adds i * row_stride.
    let mut column_offsets = [0usize; MAX_NR];
    for (j, offset) in column_offsets[..cols].iter_mut().enumerate() {
        *offset = c_layout.offset(i0, j0 + j);
    }
    let mut scratch = [0.0f32; MAX_MR * MAX_NR];
    let nr = kernel.nr;
    if store.beta != 0.0 {
        for i in 0..rows {
            for (j, &offset) in column_offsets[..cols].iter().enumerate() {
                // SAFETY: (i0 + i, j0 + j) is an element of C.
                scratch[i * nr + j] = unsafe { *c.0.add(offset + i * c_layout.row_stride) };
            }
        }
    }
    // SAFETY: the scratch tile has MAX_MR x MAX_NR >= mr x nr elements.
    unsafe { (kernel.run)(kc, a_panel, b_panel, scratch.as_mut_ptr(), nr, store) };
    for i in 0..rows {
        for (j, &offset) in column_offsets[..cols].iter().enumerate() {
            // SAFETY: as above.
            unsafe { *c.0.add(offset + i * c_layout.row_stride) = scratch[i * nr + j] };
        }
    }
}
