//! `--live-reload` (dev mode): a guest's HTML page gets a small script after its body that
//! follows the event stream ([`super::events`]) and reloads the page once a new generation of
//! its route serves, or shows a failed build's compiler output over the page (until a build
//! succeeds).
//!
//! The script is appended as one more data frame once the guest's body has ended: nothing is
//! buffered, and an HTML parser runs a script that comes after `</html>`. Only a response that
//! can take it unnoticed gets it ([`injectable`]): `text/html`, no `Content-Encoding` but
//! `identity`, a `Content-Length` (which grows by the script's length; a page without one is a
//! stream, left alone), not an answer to `HEAD`, not a status without a body (1xx, 204, 304)
//! nor a part of one (206, `Content-Range`). Every other response leaves as the guest sent it.

use crate::guest::body::ResponseBody;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap};
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The id of the element that shows a failed build's output over the page.
pub const OVERLAY_ID: &str = "hotswap-overlay";

/// The script, with `__ROUTE__`, `__GENERATION__` and `__EVENTS__` to fill in.
const SCRIPT: &str = r#"<script data-hotswap-live-reload>(function(){
var route=__ROUTE__,generation=__GENERATION__,events=__EVENTS__,id="hotswap-overlay";
if(!window.EventSource)return;
var source=new EventSource(events+"?route="+encodeURIComponent(route));
function hide(){var o=document.getElementById(id);if(o)o.remove();}
function show(title,text){hide();var o=document.createElement("div");o.id=id;
o.setAttribute("style","position:fixed;inset:0;z-index:2147483647;overflow:auto;margin:0;padding:16px;background:rgba(24,24,24,.95);color:#eee;font:13px/1.45 monospace");
var h=document.createElement("div");h.setAttribute("style","color:#ff7b72;font-weight:bold;margin-bottom:12px");h.textContent=title;
var p=document.createElement("pre");p.setAttribute("style","white-space:pre-wrap;margin:0");p.textContent=text;
o.appendChild(h);o.appendChild(p);(document.body||document.documentElement).appendChild(o);}
function serving(g){if(g!==null&&g!==generation){source.close();location.reload();return true;}hide();return false;}
function failed(d){show("hotswap: the build of route "+route+" failed"+(d.timed_out?" (timed out)":" (exit code "+d.exit_code+")")+"; still serving generation "+generation,d.output);}
function refused(d){show("hotswap: route "+route+" refused the new component; still serving generation "+generation,d.reason);}
function mine(e){var d=JSON.parse(e.data);return d.route===route?d:null;}
source.addEventListener("hello",function(e){var s=JSON.parse(e.data);(s.routes||[]).forEach(function(r){
if(r.route!==route||serving(r.generation))return;if(r.build_failed)failed(r.build_failed);else if(r.refused)refused(r.refused);});});
source.addEventListener("serving",function(e){var d=mine(e);if(d)serving(d.generation);});
source.addEventListener("built",function(e){if(mine(e))hide();});
source.addEventListener("build-failed",function(e){var d=mine(e);if(d)failed(d);});
source.addEventListener("refused",function(e){var d=mine(e);if(d)refused(d);});
})();</script>
"#;

/// The script for a page of `route` served by `generation`, following the stream at `events`.
pub fn script(route: &str, generation: u64, events: &str) -> String {
    // JSON strings, with `<` escaped so that no value can close the script element.
    let js = |s: &str| {
        serde_json::Value::from(s)
            .to_string()
            .replace('<', "\\u003c")
    };
    SCRIPT
        .replace("__ROUTE__", &js(route))
        .replace("__GENERATION__", &generation.to_string())
        .replace("__EVENTS__", &js(events))
}

/// The guest's declared length, if a response with this status and these headers, answering a
/// `HEAD` request or not, may take the script.
pub fn injectable(status: StatusCode, headers: &HeaderMap, head: bool) -> Option<u64> {
    if head
        || status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
        )
        || headers.contains_key(CONTENT_RANGE)
    {
        return None;
    }
    let mut types = headers.get_all(CONTENT_TYPE).iter();
    let html = match (types.next(), types.next()) {
        (Some(value), None) => value.to_str().ok().is_some_and(|t| {
            let essence = t.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("text/html")
        }),
        _ => false,
    };
    let identity = headers.get_all(CONTENT_ENCODING).iter().all(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|c| c.trim().is_empty() || c.trim().eq_ignore_ascii_case("identity"))
        })
    });
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (Some(value), None) => value.to_str().ok()?.trim().parse::<u64>().ok(),
        _ => None,
    };
    if html && identity { length } else { None }
}

/// `response` with the script for `route` and `generation` after its body, if it may take it
/// ([`injectable`]); else `response` untouched.
pub fn inject(
    response: Response<ResponseBody>,
    head: bool,
    route: &str,
    generation: u64,
    events: &str,
) -> Response<ResponseBody> {
    let Some(length) = injectable(response.status(), response.headers(), head) else {
        return response;
    };
    let tail = Bytes::from(script(route, generation, events));
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        CONTENT_LENGTH,
        HeaderValue::from(length + tail.len() as u64),
    );
    Response::from_parts(
        parts,
        Appended {
            inner: body,
            tail: Some(tail),
            trailers: None,
        }
        .boxed_unsync(),
    )
}

/// A body, then one more data frame (before the body's trailers, if it has any).
struct Appended {
    inner: ResponseBody,
    tail: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Appended {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.tail.is_none()
            && let Some(trailers) = this.trailers.take()
        {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        if this.tail.is_some() && this.trailers.is_none() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_trailers() {
                    Ok(trailers) => this.trailers = Some(trailers),
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                // A body cut short stays cut short: the script is not sent.
                Some(Err(err)) => {
                    this.tail = None;
                    return Poll::Ready(Some(Err(err)));
                }
                None => {}
            }
        }
        match this.tail.take() {
            Some(tail) => Poll::Ready(Some(Ok(Frame::data(tail)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none() && self.trailers.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.tail.as_ref().map_or(0, |t| t.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + extra);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::body::full;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_complete_uncompressed_html_with_a_length_is_injectable() {
        let ok = StatusCode::OK;
        let html = [
            ("content-type", "text/html; charset=utf-8"),
            ("content-length", "10"),
        ];
        assert_eq!(injectable(ok, &headers(&html), false), Some(10));
        assert_eq!(
            injectable(
                ok,
                &headers(&[("content-type", "TEXT/HTML"), ("content-length", "3")]),
                false
            ),
            Some(3)
        );
        assert_eq!(
            injectable(StatusCode::NOT_FOUND, &headers(&html), false),
            Some(10)
        );
        assert_eq!(injectable(ok, &headers(&html), true), None, "HEAD");
        for status in [204, 304, 206, 101] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(injectable(status, &headers(&html), false), None, "{status}");
        }
        for extra in [
            ("content-encoding", "gzip"),
            ("content-encoding", "identity, br"),
            ("content-range", "bytes 0-9/20"),
            ("content-length", "10"),
            ("content-type", "text/html"),
        ] {
            let mut h = headers(&html);
            h.append(
                http::header::HeaderName::from_static(extra.0),
                HeaderValue::from_static(extra.1),
            );
            assert_eq!(injectable(ok, &h, false), None, "{extra:?}");
        }
        let mut h = headers(&html);
        h.append(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert_eq!(injectable(ok, &h, false), Some(10));
        for other in [
            &[("content-type", "text/plain"), ("content-length", "10")][..],
            &[("content-type", "text/htmlx"), ("content-length", "10")],
            &[("content-type", "text/html")],
            &[("content-type", "text/html"), ("content-length", "ten")],
            &[("content-length", "10")],
        ] {
            assert_eq!(injectable(ok, &headers(other), false), None, "{other:?}");
        }
    }

    #[tokio::test]
    async fn the_script_follows_the_body_and_the_length_counts_it() {
        let page = "<html><body>hi</body></html>";
        let mut response = Response::new(full(page));
        response.headers_mut().extend(headers(&[
            ("content-type", "text/html"),
            ("content-length", &page.len().to_string()),
        ]));
        let response = inject(response, false, "index", 7, "/_hotswap/events");
        let length: usize = response.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), length);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with(page), "{text}");
        assert!(text.contains("generation=7"), "{text}");
        assert!(text.contains(r#"route="index""#), "{text}");
        assert!(text.ends_with("</script>\n"), "{text}");
    }

    #[test]
    fn no_value_can_close_the_script() {
        let s = script("a</script><b>", 1, "/_hotswap/events");
        assert_eq!(s.matches("</script>").count(), 1, "{s}");
    }
}
