//! `Decoder`: a response body's `Content-Encoding` (gzip, deflate, br, zstd) undone as
//! the body streams, in bounded memory.
//!
//! Each codec is driven through its low-level streaming interface — flate2's
//! `Decompress`, brotli's `BrotliDecompressStream`, zstd's `raw::Decoder` — which take
//! whatever input there is and fill an output buffer of our size: `OUT` bytes, reused.
//! Nothing is collected into a whole body. What a decoder holds is its codec's window
//! (deflate 32 KiB; brotli up to 16 MiB, large windows refused; zstd up to 8 MiB, the
//! limit RFC 9659 sets for HTTP) and, while the output is not being taken, a **stash**
//! of compressed bytes not yet decoded.
//!
//! The stash is what keeps a decompression bomb (a few kilobytes that inflate to
//! gigabytes) from filling memory: `feed` hands each decoded piece to a callback, and
//! when the callback says "enough" (the output's writer is behind: `body.rs`) decoding
//! stops at once; the rest of the input waits in the stash — at most what one read
//! brought — until the writer catches up and `feed` is called again. The decoded bytes
//! in flight are thus bounded by the output's own bound, not by the compression ratio.
//!
//! Errors are one line naming the coding: corrupt data, a bad checksum, or a stream that
//! stopped before its end (`finish`, when the body is complete).

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Decoded bytes produced at a time.
pub const OUT: usize = 32 * 1024;
/// Longest gzip header accepted (name, comment and extra field included).
const MAX_GZIP_HEADER: usize = 64 * 1024;
/// zstd's window limit for HTTP (RFC 9659): 2^23 bytes, 8 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Where a gzip member is.
enum Gzip {
    /// Collecting the header (a copy, capped).
    Header(Vec<u8>),
    /// Inflating the deflate data, checking its CRC-32 as it comes out.
    Body(Box<Decompress>, Crc),
    /// Collecting the 8-byte trailer (CRC-32 and size), checked against what came out.
    Trailer(Vec<u8>, Crc),
    /// A member ended cleanly (another may follow: gzip members can be concatenated).
    End,
}

enum Codec {
    Gzip(Gzip),
    /// `deflate`: zlib-wrapped as RFC 9110 says, or raw as some servers send it; told
    /// apart by the first two bytes (kept in the vector until they are there).
    Deflate(Option<Box<Decompress>>, Vec<u8>, bool),
    Brotli(
        Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
        bool,
    ),
    /// The decoder, and whether the last frame is complete.
    Zstd(Box<zstd::stream::raw::Decoder<'static>>, bool),
}

/// One body's decoder.
pub struct Decoder {
    /// The coding's name as it appears in messages.
    name: &'static str,
    codec: Codec,
    /// Compressed bytes not decoded yet (the output was not taking more).
    stash: Vec<u8>,
    /// Compressed bytes fed so far.
    fed: u64,
    /// Decoding stopped with a full output buffer: the codec may hold more output.
    more: bool,
    /// The response ended while the stash still held bytes: complete it once drained.
    pub done_pending: bool,
    /// On the fetcher's list of decoders waiting for the output (`body.rs`).
    pub listed: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoder({}, {} stashed)", self.name, self.stash.len())
    }
}

impl Decoder {
    /// The decoder for a `Content-Encoding` value; None for no coding (or `identity`).
    /// Only one coding is supported (nobody sends `gzip, br`); others are an error.
    pub fn for_encoding(value: &str) -> Result<Option<Decoder>, String> {
        let codings: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
            .collect();
        let coding = match codings[..] {
            [] => return Ok(None),
            [one] => one.to_ascii_lowercase(),
            _ => return Err(format!("Content-Encoding {value:?}: more than one coding")),
        };
        let (name, codec) = match coding.as_str() {
            "gzip" | "x-gzip" => ("gzip", Codec::Gzip(Gzip::Header(Vec::new()))),
            "deflate" => ("deflate", Codec::Deflate(None, Vec::new(), false)),
            "br" => {
                let a = StandardAlloc::default;
                let state = BrotliState::new_strict(a(), a(), a());
                ("br", Codec::Brotli(Box::new(state), false))
            }
            "zstd" => {
                let mut d = zstd::stream::raw::Decoder::new()
                    .map_err(|e| format!("zstd: cannot start a decoder: {e}"))?;
                d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                    ZSTD_WINDOW_LOG_MAX,
                ))
                .map_err(|e| format!("zstd: {e}"))?;
                ("zstd", Codec::Zstd(Box::new(d), false))
            }
            other => {
                return Err(format!(
                    "unsupported Content-Encoding {other:?} (gzip, deflate, br and zstd are)"
                ))
            }
        };
        Ok(Some(Decoder {
            name,
            codec,
            stash: Vec::new(),
            fed: 0,
            more: false,
            done_pending: false,
            listed: false,
        }))
    }

    /// The coding's name (`gzip`, `deflate`, `br`, `zstd`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// True while compressed bytes wait in the stash (or decoded ones in the codec):
    /// `feed(&[])` continues.
    pub fn pending(&self) -> bool {
        !self.stash.is_empty() || self.more
    }

    /// Decode `input` (after what is stashed), handing each decoded piece to `out`; when
    /// `out` returns false, stop and stash the rest of the input. `feed(&[])` continues
    /// with the stash.
    pub fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> Result<(), String> {
        self.fed += input.len() as u64;
        if self.stash.is_empty() {
            let used = self.decode(input, out)?;
            self.stash.extend_from_slice(&input[used..]);
        } else {
            self.stash.extend_from_slice(input);
            let stash = std::mem::take(&mut self.stash);
            let used = self.decode(&stash, out)?;
            self.stash = stash;
            self.stash.drain(..used);
        }
        Ok(())
    }

    /// The body is complete: Ok only if the compressed stream ended properly (an empty
    /// body is fine: HEAD, 204, or a server that sent nothing).
    pub fn finish(&self) -> Result<(), String> {
        let ended = match &self.codec {
            Codec::Gzip(g) => matches!(g, Gzip::End),
            Codec::Deflate(_, _, ended) | Codec::Brotli(_, ended) | Codec::Zstd(_, ended) => *ended,
        };
        match ended || self.fed == 0 {
            true => Ok(()),
            false => Err(format!(
                "{} body truncated: the compressed stream stopped before its end ({} bytes)",
                self.name, self.fed
            )),
        }
    }

    fn corrupt(&self, what: impl std::fmt::Display) -> String {
        format!("{} body is corrupt: {what}", self.name)
    }

    /// Decode from `input` until it is used up (and no output is pending) or `out` says
    /// stop; returns the input bytes used.
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<usize, String> {
        let mut buf = [0u8; OUT];
        let mut used = 0;
        loop {
            let (n, produced) = self.step(&input[used..], &mut buf)?;
            used += n;
            if produced > 0 && !out(&buf[..produced]) {
                self.more = true;
                return Ok(used);
            }
            // A full buffer may mean more output is waiting inside the codec.
            if produced == buf.len() {
                continue;
            }
            if used == input.len() {
                self.more = false;
                return Ok(used);
            }
            if n == 0 && produced == 0 {
                return Err(self.corrupt("the decoder made no progress"));
            }
        }
    }

    /// One call into the codec: (input bytes used, output bytes produced).
    fn step(&mut self, input: &[u8], buf: &mut [u8]) -> Result<(usize, usize), String> {
        let name = self.name;
        let corrupt = |what: &dyn std::fmt::Display| format!("{name} body is corrupt: {what}");
        match &mut self.codec {
            Codec::Gzip(g) => gzip_step(g, input, buf).map_err(|e| corrupt(&e)),
            Codec::Deflate(d, first, ended) => {
                if *ended {
                    return trailing(input, &corrupt);
                }
                let d = match d {
                    Some(d) => d,
                    None => {
                        // Decide zlib or raw from the first two bytes.
                        let take = (2 - first.len()).min(input.len());
                        first.extend_from_slice(&input[..take]);
                        if first.len() < 2 {
                            return Ok((take, 0));
                        }
                        let zlib = first[0] & 0x0f == 8
                            && first[0] >> 4 <= 7
                            && (u16::from(first[0]) << 8 | u16::from(first[1])) % 31 == 0;
                        let mut fresh = Box::new(Decompress::new(zlib));
                        let head = std::mem::take(first);
                        let (_, produced, end) =
                            inflate(&mut fresh, &head, buf).map_err(|e| corrupt(&e))?;
                        *ended = end;
                        *d = Some(fresh);
                        return Ok((take, produced));
                    }
                };
                let (n, produced, end) = inflate(d, input, buf).map_err(|e| corrupt(&e))?;
                *ended = end;
                Ok((n, produced))
            }
            Codec::Brotli(state, ended) => {
                if *ended {
                    return trailing(input, &corrupt);
                }
                let (mut avail_in, mut in_off) = (input.len(), 0);
                let (mut avail_out, mut out_off, mut total) = (buf.len(), 0, 0);
                let result = BrotliDecompressStream(
                    &mut avail_in,
                    &mut in_off,
                    input,
                    &mut avail_out,
                    &mut out_off,
                    buf,
                    &mut total,
                    state,
                );
                match result {
                    BrotliResult::ResultFailure => Err(corrupt(&"invalid brotli data")),
                    BrotliResult::ResultSuccess => {
                        *ended = true;
                        Ok((in_off, out_off))
                    }
                    _ => Ok((in_off, out_off)),
                }
            }
            Codec::Zstd(d, ended) => {
                use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
                if input.is_empty() && *ended {
                    return Ok((0, 0));
                }
                let mut src = InBuffer::around(input);
                let mut dst = OutBuffer::around(buf);
                let hint = d.run(&mut src, &mut dst).map_err(|e| corrupt(&e))?;
                // A hint of 0: a frame is complete (another may follow).
                *ended = hint == 0;
                Ok((src.pos(), dst.pos()))
            }
        }
    }
}

/// Bytes after the end of a brotli or deflate stream: nothing may follow.
fn trailing(
    input: &[u8],
    corrupt: &dyn Fn(&dyn std::fmt::Display) -> String,
) -> Result<(usize, usize), String> {
    match input.is_empty() {
        true => Ok((0, 0)),
        false => Err(corrupt(&"data after the end of the compressed stream")),
    }
}

/// Inflate from `input` into `buf`: (input used, output produced, stream ended).
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    buf: &mut [u8],
) -> Result<(usize, usize, bool), String> {
    let (before_in, before_out) = (d.total_in(), d.total_out());
    let status = d
        .decompress(input, buf, FlushDecompress::None)
        .map_err(|e| e.to_string())?;
    let used = (d.total_in() - before_in) as usize;
    let produced = (d.total_out() - before_out) as usize;
    Ok((used, produced, status == Status::StreamEnd))
}

/// One step of a gzip stream (RFC 1952): header, deflate data, trailer, maybe again.
fn gzip_step(g: &mut Gzip, input: &[u8], buf: &mut [u8]) -> Result<(usize, usize), String> {
    match g {
        Gzip::End if input.is_empty() => Ok((0, 0)),
        Gzip::End => {
            // Another member follows.
            *g = Gzip::Header(Vec::new());
            Ok((0, 0)).and_then(|_| gzip_step(g, input, buf))
        }
        Gzip::Header(head) => {
            let before = head.len();
            head.extend_from_slice(input);
            match gzip_header_len(head)? {
                None if head.len() > MAX_GZIP_HEADER => Err("gzip header too long".into()),
                None => Ok((input.len(), 0)),
                Some(len) => {
                    // Bytes after the header belong to the deflate data: give them back.
                    let used = len - before;
                    *g = Gzip::Body(Box::new(Decompress::new(false)), Crc::new());
                    Ok((used, 0))
                }
            }
        }
        Gzip::Body(d, crc) => {
            let (used, produced, end) = inflate(d, input, buf)?;
            crc.update(&buf[..produced]);
            if end {
                let crc = std::mem::replace(crc, Crc::new());
                *g = Gzip::Trailer(Vec::with_capacity(8), crc);
            }
            Ok((used, produced))
        }
        Gzip::Trailer(t, crc) => {
            let take = (8 - t.len()).min(input.len());
            t.extend_from_slice(&input[..take]);
            if t.len() == 8 {
                let want_crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                let want_len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                if want_crc != crc.sum() {
                    return Err("CRC-32 mismatch".into());
                }
                if want_len != crc.amount() {
                    return Err("length mismatch in the gzip trailer".into());
                }
                *g = Gzip::End;
            }
            Ok((take, 0))
        }
    }
}

/// The length of a complete gzip header at the start of `h`, None if more is needed.
fn gzip_header_len(h: &[u8]) -> Result<Option<usize>, String> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if h.len() >= 2 && h[..2] != [0x1f, 0x8b] {
        return Err("not gzip data (bad magic bytes)".into());
    }
    if h.len() >= 3 && h[2] != 8 {
        return Err("gzip with a compression method other than deflate".into());
    }
    if h.len() < 10 {
        return Ok(None);
    }
    let flags = h[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = h.get(at..at + 2) else {
            return Ok(None);
        };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match h
                .get(at..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
            {
                Some(i) => at += i + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    Ok((h.len() >= at).then_some(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"the quick brown fox jumps over the lazy dog\n"[i % 44])
            .collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Decode `input` fed in pieces of `piece` bytes, taking at most `budget` output
    /// bytes per feed (the rest stays stashed and is drained by empty feeds).
    fn decode_all(
        coding: &str,
        input: &[u8],
        piece: usize,
        budget: usize,
    ) -> Result<Vec<u8>, String> {
        let mut d = Decoder::for_encoding(coding)?.unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            let mut taken = 0;
            d.feed(chunk, &mut |b| {
                out.extend_from_slice(b);
                taken += b.len();
                taken < budget
            })?;
            while d.pending() {
                let mut taken = 0;
                d.feed(&[], &mut |b| {
                    out.extend_from_slice(b);
                    taken += b.len();
                    taken < budget
                })?;
            }
        }
        d.finish()?;
        Ok(out)
    }

    #[test]
    fn every_coding_in_any_pieces() {
        let data = text(300_000);
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&data).unwrap();
        let raw = raw.finish().unwrap();
        let zstd = zstd::stream::encode_all(&data[..], 3).unwrap();
        let mut br = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        br.write_all(&data).unwrap();
        let br = br.into_inner();
        let mut gz2 = gzip(&data[..1000]);
        gz2.extend(gzip(&data[1000..]));
        for (coding, body) in [
            ("gzip", gzip(&data)),
            ("x-gzip", gz2),
            ("deflate", zlib),
            ("deflate", raw),
            ("zstd", zstd),
            ("br", br),
        ] {
            for (piece, budget) in [(1, usize::MAX), (7, 100), (65536, OUT), (1 << 20, 1)] {
                let got = decode_all(coding, &body, piece, budget)
                    .unwrap_or_else(|e| panic!("{coding} {piece}: {e}"));
                assert!(got == data, "{coding} in pieces of {piece}");
            }
        }
    }

    #[test]
    fn corrupt_and_truncated() {
        let data = text(100_000);
        let body = gzip(&data);
        let e = decode_all("gzip", &body[..body.len() - 3], 4096, usize::MAX).unwrap_err();
        assert!(e.contains("gzip body truncated"), "{e}");
        let mut bad = body.clone();
        let n = bad.len();
        bad[n - 8] ^= 0xff; // the CRC
        let e = decode_all("gzip", &bad, 4096, usize::MAX).unwrap_err();
        assert!(e.contains("CRC-32 mismatch"), "{e}");
        let e = decode_all("gzip", b"plain text, not gzip", 4096, usize::MAX).unwrap_err();
        assert!(e.contains("gzip body is corrupt"), "{e}");
        let e = decode_all("br", &[0xff; 64], 16, usize::MAX).unwrap_err();
        assert!(e.starts_with("br body"), "{e}");
        let z = zstd::stream::encode_all(&data[..], 3).unwrap();
        let e = decode_all("zstd", &z[..z.len() / 2], 1000, usize::MAX).unwrap_err();
        assert!(e.contains("zstd body truncated"), "{e}");
        assert!(Decoder::for_encoding("compress").is_err());
        assert!(Decoder::for_encoding("gzip, br").is_err());
        assert!(Decoder::for_encoding("identity").unwrap().is_none());
    }

    #[test]
    fn a_bomb_is_decoded_a_budget_at_a_time() {
        // 64 MiB of zeros in about 64 KiB: one feed hands out at most one budget.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let mut d = Decoder::for_encoding("gzip").unwrap().unwrap();
        let mut feeds = 0;
        let mut total = 0usize;
        let mut input = &bomb[..];
        loop {
            let mut taken = 0;
            d.feed(input, &mut |b| {
                taken += b.len();
                taken < 1 << 20
            })
            .unwrap();
            input = &[];
            assert!(taken <= (1 << 20) + OUT, "one feed took {taken} bytes");
            total += taken;
            feeds += 1;
            if !d.pending() {
                break;
            }
        }
        d.finish().unwrap();
        assert_eq!(total, 64 << 20);
        assert!(feeds >= 64, "{feeds}");
    }
}
