use super::*;
use std::io::Write;
use std::process::{Command, Stdio};

const MIB: f64 = 1024.0 * 1024.0;

/// A run of `windows` windows ending at window `last`: `mib` MiB of store paths moved in
/// `secs` seconds (zstd's speed is given apart, in [`measured`]).
fn run(mib: f64, secs: f64, windows: u32, last: u32) -> Run {
    Run { raw_bytes: mib * MIB, compress_secs: 0.0, secs, windows, last }
}

/// `windows` recorded; the latest plain run; the latest zstd run and its level; zstd's CPU
/// rate in MiB/s and its ratio.
fn measured(
    windows: u32,
    plain: Option<Run>,
    zstd: Option<(Run, u8)>,
    cpu: f64,
    ratio: f64,
) -> Measured {
    let warm_up_wire = WARM_UP_WIRE;
    Measured { windows, warm_up_wire, plain, zstd, cpu_rate: Some(cpu * MIB), ratio: Some(ratio) }
}

#[test]
fn the_choice_follows_the_measured_rates() {
    use Compression::{None as Plain, Zstd};
    // Rates in the comments are MiB/s of store paths through the slower stage.
    #[rustfmt::skip]
    let table: &[(&str, Measured, Compression)] = &[
        ("nothing measured: start compressed, fast", Measured::default(), Zstd(FAST)),
        // 12 MiB/s link: the stream (13) moves far less than zstd compresses (150).
        ("the link holds zstd back: stay compressed, strong",
         measured(6, None, Some((run(12.0, 0.9, 3, 5), 1)), 150.0, 0.45), Zstd(STRONG)),
        // Loopback: the stream moves what zstd compresses (100): try plain.
        ("zstd not held back by the link: try plain",
         measured(6, None, Some((run(12.0, 0.12, 3, 5), 1)), 100.0, 0.45), Plain),
        ("incompressible data goes plain",
         measured(6, None, Some((run(12.0, 0.9, 3, 5), 1)), 150.0, 0.95), Plain),
        ("loopback: plain (133) beats zstd (100)",
         measured(9, Some(run(12.0, 0.09, 3, 8)), Some((run(12.0, 0.12, 3, 5), 1)), 100.0, 0.45), Plain),
        ("LAN: zstd (100) beats plain (80)",
         measured(9, Some(run(12.0, 0.15, 3, 8)), Some((run(12.0, 0.12, 3, 5), 1)), 110.0, 0.45), Zstd(FAST)),
        ("zstd in use (100) keeps it within the hysteresis against plain (105)",
         measured(15, Some(run(12.6, 0.12, 3, 8)), Some((run(24.0, 0.24, 6, 14), 1)), 110.0, 0.45), Zstd(FAST)),
        ("plain in use (100) keeps it within the hysteresis against zstd (105)",
         measured(15, Some(run(24.0, 0.24, 6, 14)), Some((run(12.6, 0.12, 3, 5), 1)), 110.0, 0.45), Plain),
        ("plain in use, zstd stale: probe zstd",
         measured(20, Some(run(32.0, 0.24, 8, 19)), Some((run(12.0, 0.12, 3, 5), 1)), 100.0, 0.45), Zstd(FAST)),
        ("zstd in use and held back by the link: plain, though stale, cannot win",
         measured(25, Some(run(12.0, 1.0, 3, 8)), Some((run(32.0, 1.2, 8, 24), 3)), 90.0, 0.42), Zstd(STRONG)),
        ("zstd in use, not held back, plain stale: probe plain",
         measured(25, Some(run(12.0, 0.13, 3, 8)), Some((run(32.0, 0.3, 8, 24), 1)), 110.0, 0.45), Plain),
        ("the strong level became the limit: back to fast",
         measured(25, Some(run(12.0, 1.0, 3, 20)), Some((run(32.0, 0.29, 8, 24), 3)), 120.0, 0.42), Zstd(FAST)),
    ];
    for (what, m, want) in table {
        assert_eq!(choose(m), *want, "{what}");
    }
}

#[test]
fn windows_add_up_to_runs_that_fade() {
    let w = Window {
        compression: Compression::Zstd(1),
        raw_bytes: 8 << 20,
        wire_bytes: 4 << 20,
        encode_secs: 0.125,
        compress_secs: 0.0625,
        send_secs: 0.375,
        interval_secs: 0.5,
    };
    let mut m = Measured::default();
    for _ in 0..WARM_UP_WIRE / (4 << 20) {
        m.record(&Window { send_secs: 0.0, interval_secs: 0.01, ..w });
        assert_eq!(m.zstd, None, "the first windows only warm up");
        assert_eq!(choose(&m), Compression::Zstd(FAST));
    }
    m.record(&w);
    m.record(&w);
    let (zstd, level) = m.zstd.unwrap();
    assert_eq!((zstd.windows, zstd.last, level), (2, 5, 1));
    assert_eq!(zstd.rate(), 16.0 * MIB, "16 MiB in 1 s");
    assert_eq!(m.cpu_rate, Some(128.0 * MIB));
    assert_eq!(m.ratio, Some(0.5));
    m.record(&Window { compression: Compression::None, send_secs: 0.25, interval_secs: 1.0, ..w });
    assert_eq!(m.plain.unwrap().rate(), 8.0 * MIB);
    assert_eq!(m.cpu_rate, Some(128.0 * MIB), "a plain window says nothing of zstd");
    // After the plain window, the next compressed one starts a new run.
    m.record(&Window { compression: Compression::Zstd(3), ..w });
    let (zstd, level) = m.zstd.unwrap();
    assert_eq!((zstd.windows, zstd.last, level), (1, 7, 3));
    // A long run keeps its rate but lets old windows fade.
    for _ in 0..20 {
        m.record(&w);
    }
    let (zstd, _) = m.zstd.unwrap();
    assert_eq!(zstd.windows, 21);
    assert!((zstd.rate() - 16.0 * MIB).abs() < 1.0);
    assert!(zstd.raw_bytes < 8.0 * 8.0 * MIB + 1.0, "faded: {}", zstd.raw_bytes);
}

/// The real `zstd` with `args` on `input`: its output, after checking it succeeded.
fn zstd(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(args)
        .args(["-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "zstd {args:?} failed");
    out.stdout
}

/// Raw frames of every size around the block limit, mixed with frames of the real zstd, come
/// out of the real `zstd -d` as the bytes that went in.
#[test]
fn raw_frames_and_zstd_frames_decode_as_one_stream() {
    let data: Vec<u8> = (0..(3 * MAX_BLOCK + 17)).map(|i| (i * 7 % 251) as u8).collect();
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for (i, len) in [0, 1, MAX_BLOCK - 1, MAX_BLOCK, MAX_BLOCK + 1, data.len()].iter().enumerate() {
        let part = &data[..*len];
        if i % 2 == 0 {
            wire.extend(raw_frame(part).concat());
        } else {
            wire.extend(zstd(&["-1"], part));
        }
        wire.extend(raw_frame(&data[..i]).concat());
        want.extend_from_slice(part);
        want.extend_from_slice(&data[..i]);
    }
    assert_eq!(zstd(&["-d"], &wire), want);
    let pieces = raw_frame(&data);
    assert_eq!(pieces.len(), 4, "one piece per block");
    assert!(pieces.iter().all(|p| p.len() <= MAX_BLOCK + 16));
}
