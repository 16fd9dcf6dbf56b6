//! Compile-time checks: the async face's types can move to any executor's tasks and be polled
//! without pinning, and carry the item and error types the docs promise.

use epoll_server::{Bytes, Connection, Inbound, Incoming, Outbound};
use futures::{Sink, Stream};
use std::io;

fn send_unpin_static<T: Send + Unpin + 'static>() {}

fn byte_stream<T: Stream<Item = io::Result<Bytes>>>() {}

fn byte_sink<T: Sink<Bytes, Error = io::Error>>() {}

fn connection_stream<T: Stream<Item = Connection>>() {}

#[test]
fn async_face_types_are_send_and_unpin() {
    send_unpin_static::<Connection>();
    send_unpin_static::<Inbound>();
    send_unpin_static::<Outbound>();
    send_unpin_static::<Incoming>();
}

#[test]
fn async_face_types_are_streams_and_sinks_of_bytes() {
    byte_stream::<Inbound>();
    byte_stream::<Connection>();
    byte_sink::<Outbound>();
    byte_sink::<Connection>();
    connection_stream::<Incoming>();
}
