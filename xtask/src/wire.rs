//! Just enough of the Kafka wire protocol to ask a broker for cluster metadata: the proof that it
//! serves clients, not merely that its port is open.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What a Metadata response says about the cluster.
#[derive(Debug)]
pub struct ClusterView {
    pub brokers: usize,
    pub controller_id: i32,
}

const METADATA_API_KEY: i16 = 3;
/// Version 4: the oldest that Kafka 4.x still accepts (KIP-896) and still non-flexible.
const METADATA_VERSION: i16 = 4;

pub fn metadata(addr: SocketAddr, timeout: Duration) -> std::io::Result<ClusterView> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let client_id = b"weir-xtask";
    let mut body = Vec::new();
    body.extend_from_slice(&METADATA_API_KEY.to_be_bytes());
    body.extend_from_slice(&METADATA_VERSION.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    body.extend_from_slice(&(-1i32).to_be_bytes()); // topics: null = all
    body.push(0); // allow_auto_topic_creation = false
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame)?;

    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(8..=64 * 1024 * 1024).contains(&len) {
        return Err(invalid(format!("implausible response length {len}")));
    }
    let mut resp = vec![0u8; len as usize];
    stream.read_exact(&mut resp)?;
    let mut r = Reader { buf: &resp, pos: 0 };
    let correlation = r.i32()?;
    if correlation != 7 {
        return Err(invalid(format!("correlation id {correlation} != 7")));
    }
    let _throttle = r.i32()?;
    let brokers = r.i32()?;
    for _ in 0..brokers.max(0) {
        let _node = r.i32()?;
        r.string()?;
        let _port = r.i32()?;
        r.string()?; // rack, nullable
    }
    r.string()?; // cluster id, nullable
    let controller_id = r.i32()?;
    Ok(ClusterView {
        brokers: brokers.max(0) as usize,
        controller_id,
    })
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| invalid("short response".into()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn i32(&mut self) -> std::io::Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn string(&mut self) -> std::io::Result<()> {
        let len = i16::from_be_bytes(self.take(2)?.try_into().unwrap());
        if len > 0 {
            self.take(len as usize)?;
        }
        Ok(())
    }
}
