//! Per-stream windowing, the numeric convention (crate README).
//!
//! A [`Stream`] receives one multi-channel sample at a time, in arrival
//! order; sample `i` gets index `i`. Timestamps are carried along (so a
//! window can report the timestamps of its first and last sample) but never
//! used for windowing. With `w = round(window_seconds · fs)` and
//! `hop = round(w · (1 − overlap))`, window `k` covers samples
//! `[k·hop, k·hop + w)` and is reported by the [`Stream::push`] that
//! delivers its last sample. Only complete windows exist.
//!
//! Storage is a channel-major ring of `w` samples per channel plus a ring of
//! `w` timestamps, allocated once; `push` never allocates. Because
//! `hop <= w`, the `w` most recent samples are exactly the window being
//! reported, so [`Stream::copy_window`] can copy them out (two `memcpy`s per
//! channel) into a caller-owned [`WindowBuffer`] that is reused across
//! windows and across streams.

use serde::Serialize;

use crate::dsp;

/// Window geometry in samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// `round(window_seconds · fs)`.
    pub window_samples: usize,
    /// `round(window_samples · (1 − overlap))`, at least 1, at most
    /// `window_samples`.
    pub hop: usize,
}

impl WindowSpec {
    /// Derives the geometry, validating `fs`, `window_seconds` (at least one
    /// Welch segment long) and `overlap` (in `[0, 1)`).
    pub fn new(window_seconds: f64, fs: f64, overlap: f64) -> Result<Self, String> {
        dsp::validate_sampling_rate(fs)?;
        dsp::validate_window(window_seconds, fs)?;
        dsp::validate_overlap(overlap)?;
        let window_samples = dsp::window_samples(window_seconds, fs);
        let hop = dsp::hop_samples(window_samples, overlap).min(window_samples);
        Ok(WindowSpec {
            window_samples,
            hop,
        })
    }

    /// Geometry from explicit sample counts (`hop` clamped to
    /// `1..=window_samples`). `window_samples` must be > 0.
    pub fn from_samples(window_samples: usize, hop: usize) -> Self {
        assert!(window_samples > 0, "window_samples must be > 0");
        WindowSpec {
            window_samples,
            hop: hop.clamp(1, window_samples),
        }
    }
}

/// Where a window sits in its stream; serializes as the `"window"` object of
/// the output message: `{"index","start_sample","end_sample",
/// "start_timestamp","end_timestamp"}` (`end_sample` exclusive, timestamps
/// `null` when the sample had none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WindowMeta {
    pub index: u64,
    pub start_sample: u64,
    pub end_sample: u64,
    pub start_timestamp: Option<i64>,
    pub end_timestamp: Option<i64>,
}

/// The push carried the wrong number of channel values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelCountMismatch {
    pub expected: usize,
    pub got: usize,
}

impl std::fmt::Display for ChannelCountMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sample has {} channel values, expected {}",
            self.got, self.expected
        )
    }
}

impl std::error::Error for ChannelCountMismatch {}

/// One stream's sample history and window counter.
#[derive(Debug, Clone)]
pub struct Stream {
    channels: usize,
    spec: WindowSpec,
    /// Channel-major ring: channel `c`, slot `j` at `c * w + j`.
    ring: Vec<f64>,
    timestamps: Vec<Option<i64>>,
    /// Ring slot the next sample goes to (`count % w`, kept incrementally
    /// to avoid a division per sample). Once `w` samples have arrived it is
    /// also the slot of the oldest sample.
    slot: usize,
    /// Samples accepted so far = index of the next sample.
    count: u64,
    /// Index of the next window to emit.
    next_index: u64,
    /// `next_index · hop + w`: the sample count at which it completes.
    next_end: u64,
}

impl Stream {
    /// An empty stream of `channels` channels (> 0).
    pub fn new(channels: usize, spec: WindowSpec) -> Self {
        assert!(channels > 0, "a stream needs at least one channel");
        let w = spec.window_samples;
        Stream {
            channels,
            spec,
            ring: vec![0.0; channels * w],
            timestamps: vec![None; w],
            slot: 0,
            count: 0,
            next_index: 0,
            next_end: w as u64,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// Samples accepted so far (the index the next sample will get).
    pub fn samples_seen(&self) -> u64 {
        self.count
    }

    /// Heap bytes a stream of this shape holds for its samples (one
    /// window of values and timestamps, allocated in full when it opens).
    pub fn sample_bytes(channels: usize, spec: WindowSpec) -> usize {
        let w = spec.window_samples;
        channels
            .saturating_mul(w)
            .saturating_mul(std::mem::size_of::<f64>())
            .saturating_add(w.saturating_mul(std::mem::size_of::<Option<i64>>()))
    }

    /// Heap bytes this stream holds for its samples.
    pub fn heap_bytes(&self) -> usize {
        self.ring.capacity() * std::mem::size_of::<f64>()
            + self.timestamps.capacity() * std::mem::size_of::<Option<i64>>()
    }

    /// Appends one sample (one value per channel, in configured channel
    /// order). Returns the window this sample completes, if any; its data
    /// is then available from [`Stream::copy_window`] until the next push.
    /// A sample with the wrong channel count is refused and takes no index.
    pub fn push(
        &mut self,
        sample: &[f64],
        timestamp: Option<i64>,
    ) -> Result<Option<WindowMeta>, ChannelCountMismatch> {
        if sample.len() != self.channels {
            return Err(ChannelCountMismatch {
                expected: self.channels,
                got: sample.len(),
            });
        }
        let w = self.spec.window_samples;
        let slot = self.slot;
        for (c, &v) in sample.iter().enumerate() {
            self.ring[c * w + slot] = v;
        }
        self.timestamps[slot] = timestamp;
        self.count += 1;
        self.slot = if slot + 1 == w { 0 } else { slot + 1 };

        if self.count != self.next_end {
            return Ok(None);
        }
        // The window is the last `w` samples; its first one sits in the slot
        // that the next sample will overwrite.
        let meta = WindowMeta {
            index: self.next_index,
            start_sample: self.count - w as u64,
            end_sample: self.count,
            start_timestamp: self.timestamps[self.slot],
            end_timestamp: timestamp,
        };
        self.next_index += 1;
        self.next_end += self.spec.hop as u64;
        Ok(Some(meta))
    }

    /// Copies the `window_samples` most recent samples (the window just
    /// reported by [`Stream::push`]), oldest first, channel-major into `buf`
    /// (reshaped as needed; no allocation once `buf` is large enough).
    /// Before the first window completes, unwritten slots read as 0.
    pub fn copy_window(&self, buf: &mut WindowBuffer) {
        let w = self.spec.window_samples;
        buf.reshape(self.channels, w);
        // The oldest of the last `w` samples lives at `slot`.
        let split = self.slot;
        for (c, dst) in buf.data.chunks_exact_mut(w).enumerate() {
            let src = &self.ring[c * w..(c + 1) * w];
            dst[..w - split].copy_from_slice(&src[split..]);
            dst[w - split..].copy_from_slice(&src[..split]);
        }
    }
}

/// Reusable per-channel contiguous window data, channel-major.
#[derive(Debug, Clone, Default)]
pub struct WindowBuffer {
    data: Vec<f64>,
    channels: usize,
    len: usize,
}

impl WindowBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a buffer from per-channel slices of equal length (tests,
    /// offline use).
    pub fn from_channels<S: AsRef<[f64]>>(channels: &[S]) -> Self {
        let len = channels.first().map_or(0, |c| c.as_ref().len());
        let mut buf = WindowBuffer::new();
        buf.reshape(channels.len(), len);
        for (dst, src) in buf.data.chunks_exact_mut(len.max(1)).zip(channels) {
            assert_eq!(src.as_ref().len(), len, "channels must have equal length");
            dst.copy_from_slice(src.as_ref());
        }
        buf
    }

    fn reshape(&mut self, channels: usize, len: usize) {
        self.channels = channels;
        self.len = len;
        // resize only allocates when growing past the capacity.
        self.data.resize(channels * len, 0.0);
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Channel `c`'s samples, oldest first.
    pub fn channel(&self, c: usize) -> &[f64] {
        &self.data[c * self.len..(c + 1) * self.len]
    }

    /// All channels in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        (0..self.channels).map(move |c| self.channel(c))
    }
}
