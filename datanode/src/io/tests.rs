//! Kernel tests of the io layer. Each builds a small ring; when the kernel lacks io_uring
//! or an opcode, the test prints why and skips instead of failing.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Duration;

use super::*;

fn small_config() -> RingConfig {
    RingConfig {
        submission_entries: 64,
        completion_entries: 256,
        in_flight_max: 64,
        packet_slot_count: 128,
        control_slot_count: 16,
        fixed_file_count: 8,
        pipe_count: 2,
        pipe_size_bytes: limits::PIPE_SIZE,
    }
}

/// A runtime, or `None` (with the reason printed) where io_uring is unavailable.
fn runtime() -> Option<Runtime> {
    let config = small_config();
    if let Err(why) = probe(config.locked_bytes()) {
        println!("SKIP: io_uring unavailable: {why}");
        return None;
    }
    Some(Runtime::new(&config).expect("ring setup after a successful probe"))
}

macro_rules! require {
    ($io:expr, $opcode:ident) => {
        if !$io.capabilities().opcodes.$opcode {
            println!("SKIP: kernel {} lacks {}", $io.capabilities().kernel_release, stringify!($opcode));
            return;
        }
    };
}

/// A connected loopback TCP pair: (ours on the ring, the peer as a std stream).
fn tcp_pair() -> (Socket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (ours, _) = listener.accept().unwrap();
    (Socket::from_std(ours).unwrap(), peer)
}

#[test]
fn nop_round_trips_and_submissions_are_batched() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    println!("ring setup: {}", io.setup_report());
    let before = io.stats();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                io.spawn({
                    let io = io.clone();
                    async move { io.nop().await }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task finished").expect("nop succeeded");
        }
    });
    let after = io.stats();
    let sqes = after.sqes_submitted - before.sqes_submitted;
    let enters = after.enter_calls - before.enter_calls;
    assert!(sqes >= 32, "{sqes} SQEs submitted");
    assert!(enters < 8, "32 nops took {enters} io_uring_enter calls: not batched");
    assert_eq!(io.in_flight_count(), 1, "only the wake-up eventfd read stays armed");
}

#[test]
fn read_fixed_and_write_fixed_move_file_bytes() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blk_1");
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let fixed = io.files().install(file.as_fd()).unwrap();
    drop(file); // The fixed slot keeps its own reference.
    assert_eq!(io.files().free_slots(), 7);
    runtime.block_on(async {
        let mut slot = io.packet_arena().acquire(70_000).await.unwrap();
        for (index, byte) in slot.as_mut_slice()[..70_000].iter_mut().enumerate() {
            *byte = (index % 251) as u8;
        }
        let (written, shared) = io.write_fixed(&fixed, slot.share(), 0, 70_000, 4096).await;
        written.unwrap();
        let slot = shared.try_unique().unwrap();
        let mut target = io.packet_arena().acquire(70_000).await.unwrap();
        target.as_mut_slice()[..10].fill(0xff);
        let (read, target) = io.read_fixed(&fixed, target, 0, 70_000, 4096).await;
        assert_eq!(read.unwrap(), 70_000);
        assert_eq!(&target.as_slice()[..70_000], &slot.as_slice()[..70_000]);
        let (read, target) = io.read_fixed(&fixed, target, 0, 1000, 4096 + 69_500).await;
        assert_eq!(read.unwrap(), 500, "short read at end of file");
        drop(target);
        io.fsync(&fixed, true).await.unwrap();
    });
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4096 + 70_000);
    let on_disk = std::fs::read(&path).unwrap();
    assert!(on_disk[..4096].iter().all(|byte| *byte == 0));
    assert_eq!(on_disk[4096 + 1000], (1000 % 251) as u8);
    drop(fixed);
    assert_eq!(io.files().free_slots(), 8, "slot freed with the last handle");
}

#[test]
fn fixed_file_table_reports_full_and_waits() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let file = tempfile::tempfile().unwrap();
    let held: Vec<FixedFile> = (0..8).map(|_| io.files().install(file.as_fd()).unwrap()).collect();
    assert!(matches!(io.files().install(file.as_fd()), Err(FilesError::TableFull { capacity: 8 })));
    let released = Rc::new(Cell::new(false));
    runtime.block_on(async {
        let waiter = io.spawn({
            let (io, released) = (io.clone(), released.clone());
            let fd = file.as_fd().try_clone_to_owned().unwrap();
            async move {
                let fixed = io.files().install_wait(fd.as_fd()).await.unwrap();
                assert!(released.get(), "installed only after a slot was freed");
                fixed.index()
            }
        });
        io.sleep(Duration::from_millis(20)).await;
        released.set(true);
        let freed_index = held[3].index();
        drop(held);
        let _ = freed_index;
        assert!(waiter.await.is_some());
    });
}

#[test]
fn splice_moves_file_bytes_through_a_pooled_pipe_to_a_socket() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    require!(io, splice);
    let mut file = tempfile::tempfile().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    file.write_all(&content).unwrap();
    let fixed = io.files().install(file.as_fd()).unwrap();
    let (socket, mut peer) = tcp_pair();
    let reader = std::thread::spawn(move || {
        let mut received = vec![0u8; 64 * 1024];
        peer.read_exact(&mut received).unwrap();
        received
    });
    runtime.block_on(async {
        let pipe = io.pipes().take().await.unwrap();
        let into = io.splice(
            SpliceEnd::File { file: &fixed, offset: 1000 },
            SpliceEnd::PipeWrite(&pipe),
            65_536,
            false,
        );
        assert_eq!(into.await.unwrap(), 65_536);
        assert_eq!(pipe.buffered(), 65_536);
        let out = io.splice(SpliceEnd::PipeRead(&pipe), SpliceEnd::Socket(&socket), 65_536, false).await;
        assert_eq!(out.unwrap(), 65_536);
        assert_eq!(pipe.buffered(), 0);
        drop(pipe);
        assert_eq!(io.pipes().idle_count(), 2, "an empty pipe goes back to the pool");
    });
    assert_eq!(reader.join().unwrap(), &content[1000..1000 + 65_536]);
}

#[test]
fn a_chain_sends_a_read_packet_in_order() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    require!(io, splice);
    let mut data_file = tempfile::tempfile().unwrap();
    let data: Vec<u8> = (0..3 * 65_536u32).map(|i| (i % 253) as u8).collect();
    data_file.write_all(&data).unwrap();
    let mut meta_file = tempfile::tempfile().unwrap();
    meta_file.write_all(b"HEADER-CRCS-0HEADER-CRCS-1HEADER-CRCS-2").unwrap();
    let data_fixed = io.files().install(data_file.as_fd()).unwrap();
    let meta_fixed = io.files().install(meta_file.as_fd()).unwrap();
    let (socket, mut peer) = tcp_pair();
    let reader = std::thread::spawn(move || {
        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        received
    });
    runtime.block_on(async {
        let pipe = io.pipes().take().await.unwrap();
        let slot = io.control_arena().acquire(4096).await.unwrap();
        let mut chain = io.chain();
        let header = chain.lend(slot);
        for packet in 0..3u64 {
            let at = packet as usize * 13;
            chain.read_fixed(&meta_fixed, header, at, 13, packet * 13);
            chain.send(&socket, header, at, 13, true);
            let file = SpliceEnd::File { file: &data_fixed, offset: packet * 65_536 };
            chain.splice(file, SpliceEnd::PipeWrite(&pipe), 65_536, true);
            chain.splice(SpliceEnd::PipeRead(&pipe), SpliceEnd::Socket(&socket), 65_536, packet < 2);
        }
        assert_eq!(chain.len(), 12);
        let before = io.stats().completions;
        let mut results = chain.submit().await;
        // Eleven links completed silently (CQE_SKIP_SUCCESS): one CQE for the chain.
        assert_eq!(io.stats().completions - before, 1, "one completion for the whole chain");
        assert!(results.first_error().is_none(), "{:?}", results.first_error());
        for index in 0..results.len() {
            assert!(results.check(index).is_ok());
        }
        let slot = results.take_slot(header);
        assert_eq!(&slot.as_slice()[..39], b"HEADER-CRCS-0HEADER-CRCS-1HEADER-CRCS-2");
        assert_eq!(pipe.buffered(), 0);
        socket.shutdown().unwrap();
    });
    let received = reader.join().unwrap();
    let mut expected = Vec::new();
    for packet in 0..3 {
        expected.extend_from_slice(format!("HEADER-CRCS-{packet}").as_bytes());
        expected.extend_from_slice(&data[packet * 65_536..(packet + 1) * 65_536]);
    }
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "bytes arrived out of order");
}

#[test]
fn a_short_link_cancels_the_rest_of_the_chain() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    require!(io, splice);
    let mut data_file = tempfile::tempfile().unwrap();
    data_file.write_all(&[7u8; 1000]).unwrap();
    let data_fixed = io.files().install(data_file.as_fd()).unwrap();
    let (socket, _peer) = tcp_pair();
    runtime.block_on(async {
        let pipe = io.pipes().take().await.unwrap();
        let mut chain = io.chain();
        // The file holds 1000 bytes: the first splice comes up short.
        chain.splice(
            SpliceEnd::File { file: &data_fixed, offset: 0 },
            SpliceEnd::PipeWrite(&pipe),
            4096,
            false,
        );
        chain.splice(SpliceEnd::PipeRead(&pipe), SpliceEnd::Socket(&socket), 4096, false);
        let results = chain.submit().await;
        assert!(matches!(results.check(0), Err(IoError::Short { done: 1000, wanted: 4096, .. })));
        assert!(matches!(results.check(1), Err(IoError::Cancelled { .. })));
        assert_eq!(pipe.buffered(), 1000);
        drop(pipe);
        assert_eq!(io.pipes().idle_count(), 1, "a pipe with leftover bytes is discarded");
        let fresh = io.pipes().take().await.unwrap();
        assert_eq!(fresh.buffered(), 0);
    });
}

#[test]
fn send_zc_holds_the_slot_until_the_notification() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    require!(io, send_zc);
    let (socket, mut peer) = tcp_pair();
    let reader = std::thread::spawn(move || {
        let mut received = vec![0u8; 100_000];
        peer.read_exact(&mut received).unwrap();
        received
    });
    let before = io.stats();
    runtime.block_on(async {
        let mut slot = io.packet_arena().acquire(100_000).await.unwrap();
        for (index, byte) in slot.as_mut_slice()[..100_000].iter_mut().enumerate() {
            *byte = (index % 241) as u8;
        }
        let (sent, slot) = io.send_zc_all(&socket, slot.share(), (0, 100_000), false, None).await;
        sent.unwrap();
        // The op resolved only after the notification: nothing else holds the slot.
        assert_eq!(slot.handle_count(), 1);
        assert_eq!(io.in_flight_count(), 1, "only the wake-up read is left");
        let slot = slot.try_unique().unwrap();
        assert_eq!(slot.as_slice()[99_999], (99_999 % 241) as u8);
    });
    let received = reader.join().unwrap();
    assert!(received.iter().enumerate().all(|(index, byte)| *byte == (index % 241) as u8));
    let copied = io.stats().zc_copied - before.zc_copied;
    println!("send_zc over loopback: {copied} notification(s) reported a kernel copy");
}

#[test]
fn arena_exhaustion_is_backpressure() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let arena = io.control_arena().clone();
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    runtime.block_on(async {
        let held: Vec<BufSlot> =
            (0..arena.slot_count()).map(|_| arena.try_acquire(1).unwrap().unwrap()).collect();
        assert_eq!(arena.free_slots(), 0);
        let waiter = io.spawn({
            let (arena, order) = (arena.clone(), order.clone());
            async move {
                let slot = arena.acquire(100).await.unwrap();
                order.borrow_mut().push("acquired");
                slot.capacity()
            }
        });
        io.sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the waiter must wait, not allocate");
        order.borrow_mut().push("released");
        drop(held);
        assert_eq!(waiter.await, Some(limits::CONTROL_SLOT_SIZE));
    });
    assert_eq!(*order.borrow(), ["released", "acquired"]);
    assert!(arena.exhausted_count() >= 1);
}

#[test]
fn a_dropped_connection_keeps_its_buffers_until_the_kernel_completes() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let arena = io.packet_arena().clone();
    let total = arena.slot_count();
    let (socket, peer) = tcp_pair();
    runtime.block_on(async {
        // A connection task blocked in recv: its slot is with the kernel.
        let connection = io.spawn({
            let (io, socket) = (io.clone(), socket.clone());
            async move {
                let slot = io.packet_arena().acquire(1).await.unwrap();
                let (result, _slot) = io.recv(&socket, slot, 0, 4096, None).await;
                result.map(|_| ())
            }
        });
        io.sleep(Duration::from_millis(10)).await;
        assert_eq!(arena.free_slots(), total - 1);
        let in_flight = io.in_flight_count();
        // The connection goes away mid-receive.
        connection.abort();
        drop(socket);
        io.nop().await.unwrap(); // Let the executor drop the task.
        assert!(connection.is_finished());
        // The in-flight entry still owns the slot (and the socket) until the cancel's CQE.
        assert!(io.in_flight_count() <= in_flight);
        for _ in 0..100 {
            if arena.free_slots() == total {
                break;
            }
            io.sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(arena.free_slots(), total, "slot returned once the kernel let go");
    });
    drop(peer);
}

#[test]
fn a_dropped_send_zc_keeps_its_slot_until_the_notification() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    require!(io, send_zc);
    let arena = io.packet_arena().clone();
    let total = arena.slot_count();
    let (socket, mut peer) = tcp_pair();
    runtime.block_on(async {
        // 8 MiB to a peer that is not reading: the send parks in the kernel.
        let sender = io.spawn({
            let (io, socket) = (io.clone(), socket.clone());
            async move {
                let slot = io.packet_arena().acquire(8 << 20).await.unwrap();
                let (result, _slot) = io.send_zc_all(&socket, slot.share(), (0, 8 << 20), false, None).await;
                result
            }
        });
        io.sleep(Duration::from_millis(20)).await;
        assert_eq!(arena.free_slots(), total - 64);
        sender.abort();
        io.nop().await.unwrap();
        assert!(sender.is_finished());
        assert!(arena.free_slots() < total, "the kernel may still read the slot: it stays taken");
        // The peer drains the socket: the cancelled send completes, then its notification.
        let drained = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 20];
            let mut total_read = 0;
            peer.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            while let Ok(read) = peer.read(&mut sink) {
                if read == 0 {
                    break;
                }
                total_read += read;
            }
            total_read
        });
        for _ in 0..2000 {
            if arena.free_slots() == total {
                break;
            }
            io.sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(arena.free_slots(), total, "slot returned after the notification");
        socket.shutdown().unwrap();
        drained.join().unwrap();
    });
}

#[test]
fn dropping_the_runtime_drains_in_flight_ops() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let arena = io.packet_arena().clone();
    let (socket, _peer) = tcp_pair();
    runtime.block_on(async {
        io.spawn({
            let (io, socket) = (io.clone(), socket.clone());
            async move {
                let slot = io.packet_arena().acquire(1).await.unwrap();
                let _ = io.recv(&socket, slot, 0, 10, None).await;
            }
        });
        io.sleep(Duration::from_millis(5)).await;
    });
    assert!(io.in_flight_count() >= 2, "recv and the wake-up read are pending");
    drop(io);
    drop(runtime); // Cancels both and waits for their completions.
    assert_eq!(arena.free_slots(), arena.slot_count());
}

#[test]
fn recv_times_out_and_connect_accept_work() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.block_on(async {
        let accepted = io.spawn({
            let io = io.clone();
            async move { io.accept(&listener).await }
        });
        let client = io.connect(addr, Duration::from_secs(5)).await.unwrap();
        let server = accepted.await.unwrap().unwrap();
        assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
        let slot = io.control_arena().acquire(16).await.unwrap();
        let (result, slot) = io.recv(&server, slot, 0, 16, Some(Duration::from_millis(20))).await;
        assert!(matches!(result, Err(IoError::TimedOut { .. })), "{result:?}");
        let mut message = io.control_arena().acquire(5).await.unwrap();
        message.as_mut_slice()[..5].copy_from_slice(b"hello");
        let (sent, _) =
            io.send_all(&client, message.share(), (0, 5), false, Some(Duration::from_secs(5))).await;
        sent.unwrap();
        let (result, slot) = io.recv_exact(&server, slot, 0, 5, Some(Duration::from_secs(5))).await;
        result.unwrap();
        assert_eq!(&slot.as_slice()[..5], b"hello");
        client.shutdown().unwrap();
        let (result, _) = io.recv_exact(&server, slot, 0, 5, None).await;
        assert!(matches!(result, Err(IoError::Eof { .. })), "{result:?}");
    });
    let refused = runtime.block_on(io.connect(addr, Duration::from_secs(5)));
    assert!(matches!(refused, Err(IoError::ConnectionRefused { .. })), "{refused:?}");
}

thread_local! {
    /// Lets a remote job (which must be Send) reach a channel on the ring's own thread.
    static REMOTE_SIGNAL: std::cell::RefCell<Option<sync::Sender<u32>>> = const { std::cell::RefCell::new(None) };
}

#[test]
fn remote_jobs_wake_a_parked_ring() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let remote = runtime.remote();
    let (sender, mut receiver) = sync::channel::<u32>(4);
    REMOTE_SIGNAL.with(|signal| *signal.borrow_mut() = Some(sender));
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        remote.run(|io| {
            let sender = REMOTE_SIGNAL.with(|signal| signal.borrow_mut().take()).expect("on the ring thread");
            io.spawn(async move { sender.send(7).await.unwrap() });
        });
    });
    let started = std::time::Instant::now();
    // Nothing on the ring completes by itself for 10 s: only the eventfd write can wake it.
    let received = runtime.block_on(io.with_timeout(Duration::from_secs(10), receiver.recv()));
    assert_eq!(received, Ok(Some(7)));
    assert!(started.elapsed() < Duration::from_secs(5), "woken by the remote, not the timeout");
    thread.join().unwrap();
}

#[test]
fn the_local_channel_applies_backpressure() {
    let Some(runtime) = runtime() else { return };
    let io = runtime.io().clone();
    let (sender, mut receiver) = sync::channel::<u32>(2);
    let received = runtime.block_on(async {
        let producer = io.spawn(async move {
            for value in 0..10 {
                sender.send(value).await.unwrap();
                assert!(sender.len() <= 2);
            }
        });
        let mut received = Vec::new();
        while let Some(value) = receiver.recv().await {
            received.push(value);
        }
        producer.await.unwrap();
        received
    });
    assert_eq!(received, (0..10).collect::<Vec<_>>());
}
