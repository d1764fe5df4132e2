//! Which compression the closure stream uses, chosen window by window from measured rates.
//!
//! Compression pays only while the link is slower than the CPU compresses: on a 12 MiB/s
//! uplink zstd doubles what arrives per second, on loopback or a LAN it only takes CPU the
//! encryption and unpacking need. So the stream is cut into windows; each window goes as one
//! zstd frame, compressed by `zstd` or stored as raw blocks (which `zstd -d` reads at the cost
//! of a copy), and [`choose`] decides the next window's from what the last ones measured:
//! store bytes per second through the slower of the two stages (encoding, sending). The
//! target's side stays `zstd -d | tar -x`, whatever mix of frames arrives.

use std::fmt;

/// How one window of the stream is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Raw zstd blocks: no CPU, every byte on the wire.
    None,
    /// `zstd -LEVEL`.
    Zstd(u8),
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("uncompressed"),
            Compression::Zstd(level) => write!(f, "zstd -{level}"),
        }
    }
}

/// The level the stream starts with, and falls back to when zstd is the limit: fast enough
/// for a 100 MiB/s link on one core, and most of the ratio of level 3. (Starting at level 3
/// cost an unlimited loopback 0.3 s of its 1.4 s in the warm-up alone; on a slow link the
/// first probe finds the room for [`STRONG`] after the warm-up.)
pub const FAST: u8 = 1;
/// The level the stream keeps while the link is much slower than the CPU compresses (a
/// better ratio at about half the speed of [`FAST`]).
pub const STRONG: u8 = 3;
/// Windows between two probes of the kind of encoding not in use (the link or the load may
/// have changed).
pub const REPROBE_EVERY: u32 = 12;
/// Windows in a probe as measured; two more are sent the same way before the measurement
/// arrives (one waits to be sent, one is being encoded).
pub const PROBE: u32 = 1;
/// Data that does not get below this share of its size is not worth compressing.
const INCOMPRESSIBLE: f64 = 0.9;
/// How much faster the other kind must have measured before the stream switches.
const HYSTERESIS: f64 = 1.1;

/// What one window measured, as the sending side saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub compression: Compression,
    /// Bytes of tar (store paths) in the window.
    pub raw_bytes: u64,
    /// Bytes of the window on the wire.
    pub wire_bytes: u64,
    /// Seconds from the window's first byte read from tar to its frame ready.
    pub encode_secs: f64,
    /// Of those, seconds `zstd` ran (0 when uncompressed).
    pub compress_secs: f64,
    /// Seconds writing the frame to the link took (waiting for the SSH window).
    pub send_secs: f64,
    /// Seconds from the previous window sent to this one sent: how fast the stream moved.
    pub interval_secs: f64,
}

/// The latest run of consecutive windows of one kind of encoding, summed (older windows
/// fade), so that one window the link's buffers swallowed at once does not decide alone.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Run {
    pub raw_bytes: f64,
    /// Seconds zstd ran (0 for plain windows).
    pub compress_secs: f64,
    /// Seconds the run took.
    pub secs: f64,
    /// Windows in the run.
    pub windows: u32,
    /// The run's last window (counting from 0).
    pub last: u32,
}

impl Run {
    /// Store bytes per second over the run.
    pub fn rate(&self) -> f64 {
        self.raw_bytes / self.secs.max(1e-6)
    }

    fn add(&mut self, w: &Window, index: u32) {
        if self.windows >= FADE_AFTER {
            let keep = f64::from(FADE_AFTER - 1) / f64::from(FADE_AFTER);
            self.raw_bytes *= keep;
            self.compress_secs *= keep;
            self.secs *= keep;
        }
        self.raw_bytes += w.raw_bytes as f64;
        self.compress_secs += w.compress_secs;
        self.secs += w.interval_secs;
        self.windows += 1;
        self.last = index;
    }
}

/// Windows of a run counted in full; older ones fade.
const FADE_AFTER: u32 = 8;
/// A compressed stream moving less than zstd's own speed divided by this waits for the link
/// (or the target), not for zstd: sending plain could only be slower. (The time the sender
/// waits on its writes says less: the SSH window, socket buffers and a bursting link take
/// megabytes at once.)
const LINK_BOUND: f64 = 2.0;
/// Wire bytes at the start that measure nothing: the target's unpacker starts, and the SSH
/// window, the socket buffers and a link's burst take the first megabytes at once, whatever
/// the link (benches/transfer.sh's 12 MiB/s link took 13 MiB so).
pub const WARM_UP_WIRE: u64 = 16 * 1024 * 1024;

/// What the stream has measured so far: the input of [`choose`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Windows recorded.
    pub windows: u32,
    /// Wire bytes of the warm-up windows.
    pub warm_up_wire: u64,
    /// The latest run of uncompressed windows.
    pub plain: Option<Run>,
    /// The latest run of compressed windows, and the level of its last window.
    pub zstd: Option<(Run, u8)>,
    /// zstd's own speed over the latest compressed run: store bytes per second it compressed.
    pub cpu_rate: Option<f64>,
    /// Wire bytes per store byte in the last compressed window.
    pub ratio: Option<f64>,
}

impl Measured {
    pub fn record(&mut self, w: &Window) {
        let index = self.windows;
        let extend = |run: Option<Run>| {
            // A window right after the run's last continues it; else a new run starts.
            let mut run = run.filter(|r| r.last + 1 == index).unwrap_or_default();
            run.add(w, index);
            run
        };
        let warm_up = self.warm_up_wire < WARM_UP_WIRE;
        if warm_up {
            self.warm_up_wire += w.wire_bytes;
        }
        match w.compression {
            Compression::None if warm_up => {}
            Compression::None => self.plain = Some(extend(self.plain)),
            Compression::Zstd(level) => {
                if !warm_up {
                    let run = extend(self.zstd.map(|(r, _)| r));
                    self.cpu_rate = Some(run.raw_bytes / run.compress_secs.max(1e-6));
                    self.zstd = Some((run, level));
                }
                if w.raw_bytes > 0 {
                    self.ratio = Some(w.wire_bytes as f64 / w.raw_bytes as f64);
                }
            }
        }
        self.windows += 1;
    }
}

/// The next window's encoding, from the rates measured so far (a pure function).
///
/// - First, after [`WARM_UP_WIRE`] bytes (sent at [`FAST`]), a run of [`PROBE`] compressed
///   windows at [`FAST`]: it measures zstd's speed and ratio. If the stream moved much less
///   than zstd compresses, the link held it back: compressing moves more store bytes than
///   sending them plain could, and the stream stays compressed.
/// - Otherwise a run of plain windows, then the kind that moved more store bytes per second
///   (the one in use keeps it unless the other was clearly faster), and every
///   [`REPROBE_EVERY`] windows a run of the other kind, as the link or the load may change.
///   Plain is not tried again while the link holds the compressed stream back.
/// - Compressed, the level is [`STRONG`] when zstd would idle most of the time waiting for
///   the link at [`FAST`].
pub fn choose(m: &Measured) -> Compression {
    let Some((zstd, level)) = m.zstd else { return Compression::Zstd(FAST) };
    let compressed = Compression::Zstd(level_for(m.cpu_rate, zstd.rate(), level));
    let running = |r: &Run| r.last + 1 == m.windows && r.windows < PROBE;
    if running(&zstd) {
        return compressed;
    }
    if m.ratio.is_some_and(|r| r >= INCOMPRESSIBLE) {
        return Compression::None;
    }
    let link_bound = m.cpu_rate.is_some_and(|cpu| cpu >= zstd.rate() * LINK_BOUND);
    let Some(plain) = m.plain else {
        return if link_bound { compressed } else { Compression::None };
    };
    if running(&plain) {
        return Compression::None;
    }
    // The kind in use is the one measured last; the other must beat it clearly.
    let zstd_wins = if zstd.last > plain.last {
        zstd.rate() * HYSTERESIS >= plain.rate()
    } else {
        zstd.rate() >= plain.rate() * HYSTERESIS
    };
    if zstd_wins {
        let stale = m.windows - plain.last > REPROBE_EVERY;
        if stale && !link_bound {
            Compression::None
        } else {
            compressed
        }
    } else if m.windows - zstd.last > REPROBE_EVERY {
        compressed
    } else {
        Compression::None
    }
}

/// [`STRONG`] while zstd at the level in use could compress several times what the stream
/// moves (the link is the limit), else [`FAST`].
fn level_for(cpu_rate: Option<f64>, stream_rate: f64, level: u8) -> u8 {
    let Some(cpu) = cpu_rate else { return FAST };
    // STRONG runs at about half FAST's speed: go up only with room to spare, come down
    // before the CPU becomes the limit.
    let spare = cpu / stream_rate.max(1e-6);
    match level {
        l if l >= STRONG => {
            if spare >= 1.5 {
                STRONG
            } else {
                FAST
            }
        }
        _ if spare >= 4.0 => STRONG,
        _ => FAST,
    }
}

/// The largest block zstd allows (and the most a raw block holds).
const MAX_BLOCK: usize = 128 * 1024;

/// One zstd frame holding `data` as raw blocks, split into pieces of at most one block (the
/// first also carries the frame header), ready to be written one after another.
pub fn raw_frame(data: &[u8]) -> Vec<Vec<u8>> {
    let mut pieces = Vec::with_capacity(data.len() / MAX_BLOCK + 1);
    // Magic; descriptor: single segment (the window is the content), an 8-byte content
    // size, no checksum, no dictionary.
    let mut header = vec![0x28, 0xb5, 0x2f, 0xfd, 0b1110_0000];
    header.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut blocks = data.chunks(MAX_BLOCK).peekable();
    if blocks.peek().is_none() {
        header.extend_from_slice(&block_header(0, true));
        return vec![header];
    }
    let mut first = Some(header);
    while let Some(block) = blocks.next() {
        let mut piece = first.take().unwrap_or_default();
        piece.reserve(3 + block.len());
        piece.extend_from_slice(&block_header(block.len(), blocks.peek().is_none()));
        piece.extend_from_slice(block);
        pieces.push(piece);
    }
    pieces
}

/// A block header: size, type raw (0), and whether it ends the frame.
fn block_header(size: usize, last: bool) -> [u8; 3] {
    let word = ((size as u32) << 3) | u32::from(last);
    let b = word.to_le_bytes();
    [b[0], b[1], b[2]]
}

#[cfg(test)]
mod tests;
