//! From bytes to a validated, pre-instantiated component: [`load`] (compile or take from the
//! [`cache`], link, trial-instantiate), the compiler [`tier`] a new component gets first, and
//! components pulled from an OCI registry ([`oci`]).

pub mod cache;
pub mod load;
pub mod oci;
pub mod tier;
