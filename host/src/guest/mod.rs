//! Running one request's guest: the swap [`slot`] of a route's generations, the guest's [`run`]
//! (a fresh instance, or one of the instances a WASI 0.3 generation may [`reuse`]; the 0.2 and
//! 0.3 call paths side by side; every way a guest can fail mapped to a response), the request
//! and response [`body`] wrappers that bound what a guest reads and make its failures visible
//! to the client, the host's own [`respond`]s, and the [`orphans`]: guests whose client went
//! away, which give their slot back when a request needs it. With a canary policy, a route's
//! new generation serves beside the current one as its [`canary`] candidate first.

pub mod body;
pub mod bounds;
pub mod canary;
pub mod orphans;
pub mod respond;
pub mod reuse;
pub mod run;
pub mod slot;
