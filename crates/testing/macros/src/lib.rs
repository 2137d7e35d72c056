//! `#[both_modes]`: one black-box test, written once, run in both of
//! Starling's modes.
//!
//! ```text
//! #[both_modes]
//! async fn a_post_reaches_followers(mode: Mode) {
//!     let Some(app) = spawn_app(mode).await else { return };
//!     ...
//! }
//! ```
//!
//! becomes a module `a_post_reaches_followers` holding the body once and
//! two tests, `embedded` and `scaled_out`, that run it with
//! `crate::helpers::Mode::Embedded` and `crate::helpers::Mode::ScaledOut`.
//! (The suite used to be compiled twice, the second time as a test binary
//! of its own that re-included each file with `#[path]`.)

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{ItemFn, parse_macro_input};

#[proc_macro_attribute]
pub fn both_modes(attribute: TokenStream, item: TokenStream) -> TokenStream {
    if !attribute.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[both_modes] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let mut scenario = parse_macro_input!(item as ItemFn);
    if scenario.sig.asyncness.is_none() || scenario.sig.inputs.len() != 1 {
        return syn::Error::new_spanned(
            &scenario.sig,
            "#[both_modes] expects `async fn name(mode: Mode)`",
        )
        .to_compile_error()
        .into();
    }
    let name = scenario.sig.ident.clone();
    let output = scenario.sig.output.clone();
    // The test's documentation goes on its module; the body is the module's
    // `scenario`.
    let docs: Vec<_> = scenario
        .attrs
        .iter()
        .filter(|attribute| attribute.path().is_ident("doc"))
        .cloned()
        .collect();
    scenario
        .attrs
        .retain(|attribute| !attribute.path().is_ident("doc"));
    scenario.sig.ident = format_ident!("scenario");
    quote! {
        #(#docs)*
        mod #name {
            #[allow(unused_imports)]
            use super::*;

            #scenario

            #[tokio::test]
            async fn embedded() #output {
                scenario(crate::helpers::Mode::Embedded).await
            }

            #[tokio::test]
            async fn scaled_out() #output {
                scenario(crate::helpers::Mode::ScaledOut).await
            }
        }
    }
    .into()
}
