//! The server side of SPDY/3.1 for one application protocol, `portforward.k8s.io`: what kubectl
//! speaks for `kubectl port-forward`, either tunnelled in WebSocket binary messages
//! (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+) or after a plain `Upgrade: SPDY/3.1`.
//!
//! Only what port-forward needs: SYN_STREAM (answered by an empty SYN_REPLY), DATA both ways,
//! RST_STREAM, PING (echoed), GOAWAY; SETTINGS, WINDOW_UPDATE and HEADERS are read and ignored
//! (neither side of Kubernetes' spdystream does flow control). The client creates, per local
//! connection, an `error` stream then a `data` stream with the same `requestID` header and a
//! `port` header; kubesim relays the data stream to the pod's target and writes a failure as
//! text on the error stream, then closes both (as the kubelet does).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::portforward::{PodTarget, Up, forward_one};

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// Frames larger than this are a protocol error here (port-forward frames are small).
const MAX_FRAME: usize = 16 << 20;

/// The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1): length-prefixed words,
/// then raw text. Checked against the Adler-32 the client's zlib stream names.
fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
        );
        let mut d = Vec::with_capacity(1424);
        for w in WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(TAIL.as_bytes());
        d
    })
}

/// One direction's header-block codec: inflate what the client sends (zlib, SPDY dictionary,
/// one stream for the whole connection) and "deflate" what we send as stored blocks, which
/// need no dictionary and are valid zlib for any reader.
struct HeaderCodec {
    inflate: Decompress,
    dict_set: bool,
    deflate_started: bool,
}

impl HeaderCodec {
    fn new() -> Self {
        HeaderCodec {
            inflate: Decompress::new(true),
            dict_set: false,
            deflate_started: false,
        }
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let result =
                self.inflate
                    .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - in0) as usize;
            let produced = self.inflate.total_out() - out0;
            match result {
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(want) if !self.dict_set => {
                        let have = self
                            .inflate
                            .set_dictionary(dictionary())
                            .map_err(|e| format!("setting the SPDY dictionary: {e}"))?;
                        if have != want {
                            return Err(format!(
                                "header block wants dictionary {want:#x}, the SPDY/3 one is {have:#x}"
                            ));
                        }
                        self.dict_set = true;
                        continue;
                    }
                    _ => return Err(format!("inflating a header block: {e}")),
                },
            }
            if pos >= input.len() && produced == 0 {
                return Ok(out);
            }
            let consumed = self.inflate.total_in() - in0;
            if produced == 0 && consumed == 0 && out.capacity() > out.len() {
                // No progress with room to spare: a truncated or corrupt block.
                return Err("header block does not inflate".into());
            }
        }
    }

    fn deflate_stored(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + 16);
        if !self.deflate_started {
            // zlib header: deflate, 32 KiB window, no preset dictionary, check bits.
            out.extend_from_slice(&[0x78, 0x01]);
            self.deflate_started = true;
        }
        for chunk in plain.chunks(0xffff) {
            let len = chunk.len() as u16;
            out.push(0x00); // not final, stored
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // An empty stored block, as zlib's Z_SYNC_FLUSH ends each block: Go's inflater hands
        // out what it has only then, so it never reads past this frame.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }
}

fn parse_header_block(b: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut pos = 0;
    let u32_at = |pos: &mut usize| -> Result<usize, String> {
        let s = b
            .get(*pos..*pos + 4)
            .ok_or_else(|| "truncated header block".to_string())?;
        *pos += 4;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let n = u32_at(&mut pos)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let mut pair = [String::new(), String::new()];
        for part in &mut pair {
            let len = u32_at(&mut pos)?;
            let s = b
                .get(pos..pos + len)
                .ok_or_else(|| "truncated header block".to_string())?;
            pos += len;
            *part = String::from_utf8_lossy(s).into_owned();
        }
        let [k, v] = pair;
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 0x03]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

fn data_frame(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A forwarded connection being assembled from its two streams.
#[derive(Default)]
struct Pair {
    port: u16,
    error_id: Option<u32>,
    data_id: Option<u32>,
    data_rx: Option<mpsc::Receiver<Bytes>>,
}

struct Session {
    target: Arc<PodTarget>,
    out: mpsc::Sender<Vec<u8>>,
    codec: HeaderCodec,
    pairs: HashMap<String, Pair>,
    /// Data stream id -> where its DATA frames go (dropped on FIN: the relay half-closes).
    inbound: HashMap<u32, mpsc::Sender<Bytes>>,
    /// Stream id (data or error) -> the relay serving it, aborted on RST_STREAM.
    relays: HashMap<u32, Arc<JoinHandle<()>>>,
    /// KUBESIM_DEBUG: log every frame.
    debug: bool,
}

impl Session {
    async fn send(&self, frame: Vec<u8>) -> bool {
        self.out.send(frame).await.is_ok()
    }

    async fn syn_stream(&mut self, flags: u8, payload: &[u8]) -> Result<(), String> {
        if payload.len() < 10 {
            return Err("short SYN_STREAM".into());
        }
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
        let plain = self.codec.inflate(&payload[10..])?;
        let headers = parse_header_block(&plain)?;
        let get = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let (kind, port, request) = (get("streamtype"), get("port"), get("requestid"));
        // Every stream is accepted with an empty reply, as spdystream's server does.
        let reply_headers = self.codec.deflate_stored(&0u32.to_be_bytes());
        let mut reply = id.to_be_bytes().to_vec();
        reply.extend_from_slice(&reply_headers);
        if !self.send(control_frame(SYN_REPLY, 0, &reply)).await {
            return Err("connection closed".into());
        }
        let key = if request.is_empty() {
            port.clone()
        } else {
            request
        };
        let pair = self.pairs.entry(key.clone()).or_default();
        pair.port = port.parse().unwrap_or(0);
        match kind.as_str() {
            "error" => pair.error_id = Some(id),
            "data" => {
                let (tx, rx) = mpsc::channel(64);
                if flags & FLAG_FIN == 0 {
                    self.inbound.insert(id, tx);
                }
                pair.data_id = Some(id);
                pair.data_rx = Some(rx);
            }
            other => {
                eprintln!("kubesim: port-forward: ignoring stream {id} of type {other:?}");
                return Ok(());
            }
        }
        if pair.error_id.is_some()
            && pair.data_id.is_some()
            && let Some(pair) = self.pairs.remove(&key)
        {
            self.start(pair);
        }
        Ok(())
    }

    fn start(&mut self, pair: Pair) {
        let (Some(error_id), Some(data_id), Some(data_rx)) =
            (pair.error_id, pair.data_id, pair.data_rx)
        else {
            return;
        };
        let (up_tx, mut up_rx) = mpsc::channel::<Up>(16);
        let out = self.out.clone();
        let target = self.target.clone();
        let port = pair.port;
        let relay = tokio::spawn(async move {
            let convert = async {
                while let Some(up) = up_rx.recv().await {
                    let frames = match up {
                        Up::Data(b) => vec![data_frame(data_id, 0, &b)],
                        Up::Error(msg) => vec![data_frame(error_id, 0, msg.as_bytes())],
                        Up::End => vec![
                            data_frame(data_id, FLAG_FIN, &[]),
                            data_frame(error_id, FLAG_FIN, &[]),
                        ],
                    };
                    for f in frames {
                        if out.send(f).await.is_err() {
                            return;
                        }
                    }
                }
            };
            tokio::join!(forward_one(target, port, data_rx, up_tx), convert);
        });
        let relay = Arc::new(relay);
        self.relays.insert(data_id, relay.clone());
        self.relays.insert(error_id, relay);
    }

    fn reset(&mut self, id: u32) {
        self.inbound.remove(&id);
        if let Some(relay) = self.relays.remove(&id) {
            relay.abort();
        }
    }
}

/// Serves one SPDY connection until the client goes away.
pub async fn serve<R, W>(mut rd: R, mut wr: W, target: Arc<PodTarget>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        let debug = std::env::var_os("KUBESIM_DEBUG").is_some();
        while let Some(frame) = out_rx.recv().await {
            if debug && frame.len() >= 8 {
                eprintln!(
                    "kubesim: spdy -> {:02x?} len={}",
                    &frame[..5],
                    frame.len() - 8
                );
            }
            if wr.write_all(&frame).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut s = Session {
        target,
        out,
        codec: HeaderCodec::new(),
        pairs: HashMap::new(),
        inbound: HashMap::new(),
        relays: HashMap::new(),
        debug: std::env::var_os("KUBESIM_DEBUG").is_some(),
    };
    let result = read_loop(&mut rd, &mut s).await;
    if let Err(e) = result {
        eprintln!("kubesim: port-forward (SPDY) ended: {e}");
    }
    for (_, relay) in s.relays.drain() {
        relay.abort();
    }
    drop(s);
    let _ = writer.await;
}

async fn read_loop<R: AsyncRead + Unpin>(rd: &mut R, s: &mut Session) -> Result<(), String> {
    let mut head = [0u8; 8];
    loop {
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("frame of {len} bytes"));
        }
        let mut payload = vec![0u8; len];
        rd.read_exact(&mut payload)
            .await
            .map_err(|e| e.to_string())?;
        if s.debug {
            eprintln!(
                "kubesim: spdy <- {} flags={flags} len={len}",
                if head[0] & 0x80 == 0 {
                    format!(
                        "DATA stream {}",
                        u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff
                    )
                } else {
                    format!("control type {}", u16::from_be_bytes([head[2], head[3]]))
                }
            );
        }
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            if let Some(tx) = s.inbound.get(&id)
                && !payload.is_empty()
                && tx.send(Bytes::from(payload)).await.is_err()
            {
                s.inbound.remove(&id);
            }
            if flags & FLAG_FIN != 0 {
                // The client is done writing: the relay half-closes the target.
                s.inbound.remove(&id);
            }
            continue;
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        match kind {
            SYN_STREAM => s.syn_stream(flags, &payload).await?,
            RST_STREAM if payload.len() >= 4 => {
                let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                    & 0x7fff_ffff;
                s.reset(id);
            }
            PING if !s.send(control_frame(PING, 0, &payload)).await => return Ok(()),
            GOAWAY => return Ok(()),
            // SETTINGS, WINDOW_UPDATE, HEADERS, unknown: nothing to do.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert!(d.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(d.ends_with(b"utf-,*,enq=0."));
    }

    #[test]
    fn stored_header_blocks_roundtrip_through_zlib() {
        let mut c = HeaderCodec::new();
        let mut block = Vec::new();
        block.extend_from_slice(&1u32.to_be_bytes());
        for s in ["port", "8200"] {
            block.extend_from_slice(&(s.len() as u32).to_be_bytes());
            block.extend_from_slice(s.as_bytes());
        }
        let first = c.deflate_stored(&block);
        let second = c.deflate_stored(&block);
        let mut d = HeaderCodec::new();
        assert_eq!(
            parse_header_block(&d.inflate(&first).expect("first")).expect("parse"),
            vec![("port".to_string(), "8200".to_string())]
        );
        assert_eq!(d.inflate(&second).expect("second"), block);
    }
}
