//! SIP facts that the compiler and the answer share: limits Kamailio
//! enforces, the headers a route may not set, and standard reason phrases.

/// The longest `uri` or `dst_uri` rtjson accepts (Kamailio's own limit).
pub(crate) const MAX_URI: usize = 1023;

/// Headers a rule may never set: rtjson would duplicate or break them.
pub(crate) const PROTECTED_HEADERS: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "content-length",
    "content-type",
    "max-forwards",
    "route",
    "record-route",
    // compact forms
    "v",
    "f",
    "t",
    "i",
    "m",
    "l",
    "c",
];

/// The standard reason phrase of a SIP failure code.
pub(crate) fn default_reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Rejected",
    }
}
