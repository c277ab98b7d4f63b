//! The session cookies, where a request's access token comes from, and the CSRF double-submit
//! check that cookie-authenticated writes need.
//!
//! Why a Bearer request needs no CSRF token: a browser attaches cookies to a cross-site request
//! on its own, but never an `Authorization` header, so only cookie authentication can be forged.

use axum::http::{HeaderMap, HeaderValue, Method, header};

use allot_engine::{constant_time_eq, random_token};

use super::jwt::IssuedToken;
use super::{ACCESS_TOKEN_TTL_MS, REFRESH_TOKEN_TTL_MS};

pub const ACCESS_COOKIE: &str = "access_token";
pub const REFRESH_COOKIE: &str = "refresh_token";
pub const CSRF_COOKIE: &str = "csrf_token";
/// Header names are case-insensitive; `HeaderMap` stores them lower-case.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The refresh token goes only to the endpoints that consume it, never with every request.
pub const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";
const SITE_PATH: &str = "/";
const MS_PER_S: u64 = 1000;

/// Where the access token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Bearer,
    Cookie,
}

/// How the session cookies are set. `secure: false` (`--insecure-cookies`) only for plain-HTTP
/// local use: browsers drop `Secure` cookies on `http://` origins other than localhost.
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    pub secure: bool,
}

/// One cookie's attributes; the value and Max-Age vary.
struct CookieSpec {
    name: &'static str,
    path: &'static str,
    /// Scripts must read the CSRF token to echo it in a header; the other two stay out of reach.
    http_only: bool,
}

const ACCESS_SPEC: CookieSpec = CookieSpec {
    name: ACCESS_COOKIE,
    path: SITE_PATH,
    http_only: true,
};
const REFRESH_SPEC: CookieSpec = CookieSpec {
    name: REFRESH_COOKIE,
    path: REFRESH_COOKIE_PATH,
    http_only: true,
};
const CSRF_SPEC: CookieSpec = CookieSpec {
    name: CSRF_COOKIE,
    path: SITE_PATH,
    http_only: false,
};

impl CookiePolicy {
    /// `Set-Cookie` values for a login or a refresh: the access token, the refresh token and a
    /// fresh CSRF token.
    ///
    /// The CSRF cookie lives as long as the refresh token, not the access token: a client whose
    /// access token ran out must still be able to send the CSRF header with its refresh call.
    pub fn session_cookies(&self, access: &IssuedToken, refresh_token: &str) -> Vec<HeaderValue> {
        vec![
            self.set_cookie(&ACCESS_SPEC, &access.token, ACCESS_TOKEN_TTL_MS / MS_PER_S),
            self.set_cookie(
                &REFRESH_SPEC,
                refresh_token,
                REFRESH_TOKEN_TTL_MS / MS_PER_S,
            ),
            self.set_cookie(&CSRF_SPEC, &random_token(), REFRESH_TOKEN_TTL_MS / MS_PER_S),
        ]
    }

    /// `Set-Cookie` values that delete all three cookies. A browser deletes a cookie only when
    /// name, Path (and domain) match the one it holds, hence the same attributes as when set.
    pub fn clear_cookies(&self) -> Vec<HeaderValue> {
        [ACCESS_SPEC, REFRESH_SPEC, CSRF_SPEC]
            .iter()
            .map(|spec| self.set_cookie(spec, "", 0))
            .collect()
    }

    fn set_cookie(&self, spec: &CookieSpec, value: &str, max_age_s: u64) -> HeaderValue {
        // The values are our own tokens (base64url, JWTs). Checked because a `;` in a value would
        // smuggle in attributes of its own.
        assert!(
            value.bytes().all(is_cookie_octet),
            "cookie `{}` value is not cookie-safe",
            spec.name
        );
        let mut text = format!(
            "{}={value}; Path={}; Max-Age={max_age_s}",
            spec.name, spec.path
        );
        if spec.http_only {
            text.push_str("; HttpOnly");
        }
        if self.secure {
            text.push_str("; Secure");
        }
        // Lax, not Strict: a user following a link to the shop from elsewhere arrives logged in;
        // cross-site writes are refused by SameSite and the CSRF check in any case.
        text.push_str("; SameSite=Lax");
        HeaderValue::try_from(text).expect("cookie-octets and attributes are valid header bytes")
    }
}

/// The value of cookie `name` from the request's `Cookie` header(s), or `None` if it is absent,
/// empty, or not made of cookie-octets (RFC 6265, 4.1.1). If the name occurs more than once
/// the first wins, as browsers send the cookie with the most specific path first.
///
/// Works on bytes: other cookies on the same site may hold bytes that are not valid header
/// text, and they must not hide ours.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (found, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
            (!found.is_empty() && found == name.as_bytes()).then_some(value)
        })
        .and_then(|value| {
            // A cookie-value may be wrapped in double quotes.
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            let well_formed = !value.is_empty() && value.iter().copied().all(is_cookie_octet);
            well_formed
                .then(|| std::str::from_utf8(value).ok())
                .flatten()
        })
}

/// The access token of a request: `Authorization: Bearer <token>` first, else the
/// `access_token` cookie. An `Authorization` header with another scheme is ignored; a Bearer
/// one that is malformed, or more than one `Authorization` header, gives `None` rather than a
/// fallback to the cookie, so a client never runs under a credential it did not mean to send.
pub fn access_token(headers: &HeaderMap) -> Option<(&str, Credential)> {
    let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
    if let Some(authorization) = authorizations.next() {
        if authorizations.next().is_some() {
            return None;
        }
        if let Some(token) = bearer_token(authorization.as_bytes()) {
            return token.map(|token| (token, Credential::Bearer));
        }
    }
    cookie(headers, ACCESS_COOKIE).map(|token| (token, Credential::Cookie))
}

/// `None` if the header is not of the Bearer scheme; `Some(None)` if it is but malformed.
fn bearer_token(value: &[u8]) -> Option<Option<&str>> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    // The scheme is case-insensitive (RFC 9110, 11.1) and is followed by at least one space.
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first().is_some_and(|&b| b != b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    let well_formed = !token.is_empty() && is_token68(token);
    Some(
        well_formed
            .then(|| std::str::from_utf8(token).ok())
            .flatten(),
    )
}

/// The CSRF double-submit check. Safe methods and Bearer requests always pass; any other method
/// with cookie authentication needs an `X-CSRF-Token` header equal to the `csrf_token` cookie,
/// both present and non-empty. Compared in constant time so the cookie cannot be guessed byte by
/// byte.
pub fn csrf_ok(method: &Method, headers: &HeaderMap, credential: Credential) -> bool {
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method);
    if safe || credential == Credential::Bearer {
        return true;
    }
    let mut sent = headers.get_all(CSRF_HEADER).iter();
    let (Some(sent), None) = (sent.next(), sent.next()) else {
        return false;
    };
    let Some(expected) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    !sent.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes())
}

/// RFC 6265, 4.1.1: US-ASCII except controls, whitespace, DQUOTE, comma, semicolon, backslash.
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// RFC 9110, 11.2: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && token[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> IssuedToken {
        IssuedToken {
            token: "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJ1c3JfMSJ9.c2ln".to_owned(),
            jti: "jti".to_owned(),
            expires_ms: 0,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    fn texts(values: &[HeaderValue]) -> Vec<String> {
        values
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    /// The attribute list of a Set-Cookie value, after `name=value`.
    fn attributes(set_cookie: &str) -> Vec<&str> {
        set_cookie.split("; ").skip(1).collect()
    }

    #[test]
    fn session_cookies_carry_the_right_attributes() {
        let cookies = texts(&CookiePolicy { secure: true }.session_cookies(&issued(), "refresh-1"));
        assert_eq!(cookies.len(), 3);

        assert!(cookies[0].starts_with(&format!("access_token={}; ", issued().token)));
        assert_eq!(
            attributes(&cookies[0]),
            [
                "Path=/",
                "Max-Age=900",
                "HttpOnly",
                "Secure",
                "SameSite=Lax"
            ]
        );

        assert!(cookies[1].starts_with("refresh_token=refresh-1; "));
        assert_eq!(
            attributes(&cookies[1]),
            [
                "Path=/api/v1/auth",
                "Max-Age=2592000",
                "HttpOnly",
                "Secure",
                "SameSite=Lax"
            ]
        );

        let csrf_value = cookies[2]
            .strip_prefix("csrf_token=")
            .and_then(|rest| rest.split(';').next())
            .expect("csrf cookie first");
        assert_eq!(csrf_value.len(), 43);
        assert_eq!(
            attributes(&cookies[2]),
            ["Path=/", "Max-Age=2592000", "Secure", "SameSite=Lax"]
        );
    }

    #[test]
    fn insecure_policy_drops_only_secure() {
        let cookies =
            texts(&CookiePolicy { secure: false }.session_cookies(&issued(), "refresh-1"));
        for cookie in &cookies {
            assert!(!cookie.contains("Secure"), "{cookie}");
            assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        }
        assert!(cookies[0].contains("HttpOnly"));
        assert!(cookies[1].contains("HttpOnly"));
        assert!(!cookies[2].contains("HttpOnly"));
    }

    #[test]
    fn each_login_gets_a_fresh_csrf_token() {
        let policy = CookiePolicy { secure: true };
        let a = texts(&policy.session_cookies(&issued(), "r"));
        let b = texts(&policy.session_cookies(&issued(), "r"));
        assert_ne!(a[2], b[2]);
    }

    #[test]
    fn clear_cookies_expire_all_three_with_the_same_path() {
        for secure in [true, false] {
            let cookies = texts(&CookiePolicy { secure }.clear_cookies());
            assert_eq!(
                cookies[0],
                format!(
                    "access_token=; Path=/; Max-Age=0; HttpOnly{}; SameSite=Lax",
                    if secure { "; Secure" } else { "" }
                )
            );
            assert!(cookies[1].starts_with("refresh_token=; Path=/api/v1/auth; Max-Age=0; "));
            assert!(cookies[2].starts_with("csrf_token=; Path=/; Max-Age=0; "));
            assert!(!cookies[2].contains("HttpOnly"));
            assert_eq!(cookies[0].contains("Secure"), secure);
        }
    }

    #[test]
    #[should_panic(expected = "not cookie-safe")]
    fn a_value_that_would_inject_attributes_is_refused() {
        let _ = CookiePolicy { secure: true }.session_cookies(&issued(), "x; Domain=evil.example");
    }

    #[test]
    fn cookie_finds_one_among_several_with_odd_spacing() {
        let map = headers(&[(
            "cookie",
            "theme=dark;access_token=abc.def ;  csrf_token = xyz ;; novalue; =orphan",
        )]);
        assert_eq!(cookie(&map, "access_token"), Some("abc.def"));
        assert_eq!(cookie(&map, "csrf_token"), Some("xyz"));
        assert_eq!(cookie(&map, "theme"), Some("dark"));
        assert_eq!(cookie(&map, "refresh_token"), None);
        assert_eq!(cookie(&map, "novalue"), None);
        assert_eq!(cookie(&map, ""), None);
    }

    #[test]
    fn cookie_reads_across_several_cookie_headers() {
        let map = headers(&[("cookie", "a=1; b=2"), ("cookie", "csrf_token=three")]);
        assert_eq!(cookie(&map, "b"), Some("2"));
        assert_eq!(cookie(&map, "csrf_token"), Some("three"));
    }

    #[test]
    fn cookie_first_occurrence_wins_and_names_match_exactly() {
        let map = headers(&[(
            "cookie",
            "xaccess_token=no; ACCESS_TOKEN=no; access_token=first; access_token=second",
        )]);
        assert_eq!(cookie(&map, "access_token"), Some("first"));
    }

    #[test]
    fn malformed_or_empty_values_are_absent() {
        let map = headers(&[("cookie", "a=; b=x\"y; c=\"quoted\"; d=\"; e=has space")]);
        assert_eq!(cookie(&map, "a"), None);
        assert_eq!(cookie(&map, "b"), None);
        assert_eq!(cookie(&map, "c"), Some("quoted"));
        assert_eq!(cookie(&map, "d"), None);
        assert_eq!(cookie(&map, "e"), None);
    }

    #[test]
    fn non_ascii_bytes_in_other_cookies_do_not_hide_ours() {
        let mut map = HeaderMap::new();
        map.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"name=J\xc3\xbcrgen; csrf_token=ok").expect("obs-text"),
        );
        assert_eq!(cookie(&map, "csrf_token"), Some("ok"));
        assert_eq!(cookie(&map, "name"), None);
    }

    #[test]
    fn bearer_wins_over_the_cookie() {
        let map = headers(&[
            ("authorization", "Bearer aaa.bbb.ccc"),
            ("cookie", "access_token=ddd.eee.fff"),
        ]);
        assert_eq!(
            access_token(&map),
            Some(("aaa.bbb.ccc", Credential::Bearer))
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_tolerates_spaces() {
        for value in ["bearer aaa.bbb", "BEARER   aaa.bbb  "] {
            let map = headers(&[("authorization", value)]);
            assert_eq!(
                access_token(&map),
                Some(("aaa.bbb", Credential::Bearer)),
                "{value}"
            );
        }
    }

    #[test]
    fn cookie_is_the_fallback() {
        let map = headers(&[("cookie", "access_token=ddd.eee.fff")]);
        assert_eq!(
            access_token(&map),
            Some(("ddd.eee.fff", Credential::Cookie))
        );
        let map = headers(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("cookie", "access_token=ddd.eee.fff"),
        ]);
        assert_eq!(
            access_token(&map),
            Some(("ddd.eee.fff", Credential::Cookie))
        );
        assert_eq!(access_token(&HeaderMap::new()), None);
    }

    #[test]
    fn malformed_or_ambiguous_bearer_gives_none() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer =",
            "Bearer a;b",
            "Bearerx a",
        ] {
            let map = headers(&[("authorization", value), ("cookie", "access_token=c")]);
            let found = access_token(&map);
            // "Bearerx a" is another scheme: the cookie is used; the rest are broken Bearers.
            if value == "Bearerx a" {
                assert_eq!(found, Some(("c", Credential::Cookie)));
            } else {
                assert_eq!(found, None, "{value:?}");
            }
        }
        let map = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ]);
        assert_eq!(access_token(&map), None);
    }

    #[test]
    fn csrf_passes_safe_methods_and_bearer() {
        let empty = HeaderMap::new();
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(csrf_ok(&method, &empty, Credential::Cookie), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(csrf_ok(&method, &empty, Credential::Bearer), "{method}");
            assert!(!csrf_ok(&method, &empty, Credential::Cookie), "{method}");
        }
    }

    #[test]
    fn csrf_needs_matching_header_and_cookie() {
        let ok = headers(&[("cookie", "csrf_token=tok123"), ("x-csrf-token", "tok123")]);
        assert!(csrf_ok(&Method::POST, &ok, Credential::Cookie));
        let ok_any_case = headers(&[("cookie", "csrf_token=tok123"), ("X-CSRF-Token", "tok123")]);
        assert!(csrf_ok(&Method::DELETE, &ok_any_case, Credential::Cookie));

        for refused in [
            headers(&[("cookie", "csrf_token=tok123"), ("x-csrf-token", "tok124")]),
            headers(&[("cookie", "csrf_token=tok123"), ("x-csrf-token", "tok12")]),
            headers(&[("cookie", "csrf_token=tok123")]),
            headers(&[("x-csrf-token", "tok123")]),
            headers(&[("cookie", "csrf_token="), ("x-csrf-token", "")]),
            headers(&[
                ("cookie", "csrf_token=tok123"),
                ("x-csrf-token", "tok123"),
                ("x-csrf-token", "tok123"),
            ]),
        ] {
            assert!(
                !csrf_ok(&Method::PATCH, &refused, Credential::Cookie),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn csrf_treats_unusual_methods_as_unsafe() {
        let method = Method::from_bytes(b"PURGE").expect("extension method");
        assert!(!csrf_ok(&method, &HeaderMap::new(), Credential::Cookie));
    }
}
