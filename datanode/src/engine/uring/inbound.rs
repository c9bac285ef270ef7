//! The receiving side of a data-port connection on the ring: ops, varint-delimited
//! messages (responses, acks, statuses) through a small registered buffer, and packets
//! straight into a registered packet slot: PLEN+HLEN first, then exactly the rest of the
//! packet, so a packet never shares a slot with the next one and never needs copying.
//!
//! Every length is checked against `ringfs_common::limits` before anything is sized by it.

use std::time::Duration;

use prost::Message;
use ringfs_common::checksum::DataChecksum;
use ringfs_common::dtp::{decode_delimited, DtpError, OpRequest, PacketLayout};
use ringfs_common::limits::{DTP_MESSAGE_SIZE_MAX, OP_REQUEST_SIZE_MAX, PACKET_LENGTHS_SIZE};

use super::conn::XceiverError;
use crate::io::limits::{CONTROL_SLOT_SIZE, PACKET_SLOT_SIZE};
use crate::io::{BufSlot, Io, IoError, Socket};

/// Buffered receiver of one socket.
pub(super) struct Inbound {
    socket: Socket,
    /// `None` while nothing is buffered (an idle connection holds no registered memory:
    /// a thousand idle client connections must not starve the busy ones of slots) and
    /// while lent to a receive.
    buf: Option<BufSlot>,
    start: usize,
    end: usize,
}

impl Inbound {
    /// A receiver for `socket`; it takes a control slot only once bytes arrive.
    pub(super) fn new(socket: Socket) -> Inbound {
        Inbound { socket, buf: None, start: 0, end: 0 }
    }

    fn capacity(&self) -> usize {
        self.buf.as_ref().map_or(0, BufSlot::capacity)
    }

    fn buffered(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf.as_slice()[self.start..self.end],
            None => &[],
        }
    }

    /// Receives more bytes after the buffered ones; returns how many (0 = end of stream).
    /// With nothing buffered it first waits for the socket to become readable, and only
    /// then takes a control slot.
    async fn fill(&mut self, io: &Io, timeout: Duration) -> Result<usize, XceiverError> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.is_none() {
            io.poll_readable(&self.socket, Some(timeout)).await?;
            self.buf = Some(io.control_arena().acquire(CONTROL_SLOT_SIZE).await?);
        }
        let capacity = self.capacity();
        if self.end == capacity && self.start > 0 {
            let (start, end) = (self.start, self.end);
            self.buf.as_mut().expect("buffer present").as_mut_slice().copy_within(start..end, 0);
            (self.start, self.end) = (0, end - start);
        }
        assert!(self.end < capacity, "fill called with a full buffer");
        let slot = self.buf.take().expect("buffer present");
        let (received, slot) =
            io.recv(&self.socket, slot, self.end, capacity - self.end, Some(timeout)).await;
        self.buf = Some(slot);
        let received = received?;
        self.end += received;
        Ok(received)
    }

    /// Makes room for a message of up to `size_max` bytes when the buffer is full.
    async fn grow(&mut self, io: &Io, size_max: usize) -> Result<(), XceiverError> {
        let capacity = self.capacity();
        let wanted = (capacity * 2).min(size_max.next_multiple_of(CONTROL_SLOT_SIZE));
        if wanted <= capacity {
            return Err(
                DtpError::TooLarge { what: "message", size: self.end - self.start, max: size_max }.into()
            );
        }
        let mut bigger = io.control_arena().acquire(wanted).await?;
        let held = self.end - self.start;
        bigger.as_mut_slice()[..held].copy_from_slice(self.buffered());
        self.buf = Some(bigger);
        (self.start, self.end) = (0, held);
        Ok(())
    }

    /// Gives the buffer back when nothing is buffered (between ops).
    fn release_if_empty(&mut self) {
        if self.start == self.end {
            self.buf = None;
            (self.start, self.end) = (0, 0);
        }
    }

    /// The next op request; `Ok(None)` when the peer closed before sending one.
    pub(super) async fn read_op(
        &mut self,
        io: &Io,
        timeout: Duration,
    ) -> Result<Option<OpRequest>, XceiverError> {
        self.release_if_empty();
        loop {
            // Version and op code are checked as soon as their 3 bytes are in, and the
            // body's length against OP_REQUEST_SIZE_MAX before waiting for the body.
            if let Some((op, consumed)) = OpRequest::decode(self.buffered())? {
                self.start += consumed;
                return Ok(Some(op));
            }
            if self.buf.is_some() && self.end - self.start == self.capacity() {
                self.grow(io, OP_REQUEST_SIZE_MAX + 16).await?;
            }
            if self.fill(io, timeout).await? == 0 {
                if self.start == self.end {
                    return Ok(None);
                }
                return Err(IoError::Eof { op: "recv op request" }.into());
            }
        }
    }

    /// The next varint-delimited message (capped at DTP_MESSAGE_SIZE_MAX).
    pub(super) async fn read_message<M: Message + Default>(
        &mut self,
        io: &Io,
        what: &'static str,
        timeout: Duration,
    ) -> Result<M, XceiverError> {
        loop {
            if let Some((message, consumed)) = decode_delimited::<M>(self.buffered(), what)? {
                self.start += consumed;
                return Ok(message);
            }
            if self.buf.is_some() && self.end - self.start == self.capacity() {
                self.grow(io, DTP_MESSAGE_SIZE_MAX + 16).await?;
            }
            if self.fill(io, timeout).await? == 0 {
                return Err(IoError::Eof { op: what }.into());
            }
        }
    }

    /// Moves up to `max` buffered bytes into `slot[at..]`; returns how many.
    fn take_into(&mut self, slot: &mut BufSlot, at: usize, max: usize) -> usize {
        let count = (self.end - self.start).min(max);
        if count > 0 {
            slot.as_mut_slice()[at..at + count].copy_from_slice(&self.buffered()[..count]);
            self.start += count;
        }
        count
    }

    /// Receives one whole packet into a registered packet slot.
    pub(super) async fn read_packet(
        &mut self,
        io: &Io,
        checksum: DataChecksum,
        timeout: Duration,
    ) -> Result<(BufSlot, PacketLayout), XceiverError> {
        let mut slot = io.packet_arena().acquire(PACKET_SLOT_SIZE).await?;
        // Bytes read ahead with the op request (a DN-to-DN copy sends op and packets
        // back to back) come out of the buffer; everything else lands in the slot.
        let mut have = self.take_into(&mut slot, 0, PACKET_LENGTHS_SIZE);
        if have < PACKET_LENGTHS_SIZE {
            let (received, returned) =
                io.recv_exact(&self.socket, slot, have, PACKET_LENGTHS_SIZE - have, Some(timeout)).await;
            slot = returned;
            received?;
            have = PACKET_LENGTHS_SIZE;
        }
        let lengths = &slot.as_slice()[..PACKET_LENGTHS_SIZE];
        // Refuses a short PLEN, a long HLEN or an oversized packet before sizing anything.
        PacketLayout::decode(lengths, Some(checksum))?;
        let payload_len = u32::from_be_bytes([lengths[0], lengths[1], lengths[2], lengths[3]]) as usize;
        let header_len = u16::from_be_bytes([lengths[4], lengths[5]]) as usize;
        let total = PACKET_LENGTHS_SIZE + header_len + payload_len - 4;
        if total > slot.capacity() {
            let mut bigger = io.packet_arena().acquire(total).await?;
            bigger.as_mut_slice()[..PACKET_LENGTHS_SIZE]
                .copy_from_slice(&slot.as_slice()[..PACKET_LENGTHS_SIZE]);
            slot = bigger;
        }
        have += self.take_into(&mut slot, have, total - have);
        if have < total {
            let (received, returned) =
                io.recv_exact(&self.socket, slot, have, total - have, Some(timeout)).await;
            slot = returned;
            received.map_err(|error| match error {
                IoError::Eof { op } => IoError::Short { op, done: have, wanted: total },
                other => other,
            })?;
        }
        let layout =
            PacketLayout::decode(&slot.as_slice()[..total], Some(checksum))?.expect("whole packet present");
        assert_eq!(layout.total_len(), total);
        Ok((slot, layout))
    }

    /// Reads and drops whatever arrives until the peer closes or `duration` passes.
    pub(super) async fn discard(&mut self, io: &Io, duration: Duration) {
        let deadline = std::time::Instant::now() + duration;
        loop {
            (self.start, self.end) = (0, 0);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || !matches!(self.fill(io, left).await, Ok(received) if received > 0) {
                return;
            }
        }
    }
}
