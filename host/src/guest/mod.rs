//! Running one request's guest: the swap [`slot`] of a route's generations, the instances a
//! WASI 0.3 generation may [`reuse`], and the request and response [`body`] wrappers that bound
//! what a guest reads and make its failures visible to the client.

pub mod body;
pub mod reuse;
pub mod slot;
