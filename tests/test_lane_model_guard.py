"""A guard for the compiled lane (proxy/lane.py) and the fast path (proxy/fastpath.py): both
serve a location from a compiled summary and must leave to the general path every location
whose configuration they do not reproduce.  The lane checks what it knows; a new model field
(a directive given a typed node) is invisible to it until someone looks.  This snapshot fails
when the model's per-level settings change: check ``Lane._compile_loc`` (and
``fastpath.start``) handles the new field or keeps such locations off the lane, add a case to
tests/compat (see test_lane_filters_vs_nginx.py, test_proxy_cookie_vs_nginx.py), then update
the snapshot.  (sub_filter, charset and proxy_cookie_* once slipped through this way.)"""

from __future__ import annotations

import dataclasses

import proxy.model as m

SNAPSHOT = {
    "Scope": "rewrites proxy_pass proxy fastcgi_pass fastcgi add_headers expires error_pages "
             "static access limits logging realip tls http2 http3 resolver other",
    "ProxyConf": "set_headers cookie_domains cookie_paths cookie_flags hide_headers "
                 "pass_headers http_version redirects connect_timeout read_timeout "
                 "send_timeout next_upstream next_upstream_tries next_upstream_timeout "
                 "intercept_errors buffering request_buffering pass_request_headers "
                 "pass_request_body method set_body ignore_client_abort",
    "StaticConf": "root index try_files autoindex default_type types internal log_not_found "
                  "etag charset source_charset override_charset charset_types sub_filters "
                  "sub_filter_once sub_filter_types sub_filter_last_modified",
    "AccessConf": "rules satisfy auth_basic auth_basic_user_file limit_req limit_req_status "
                  "limit_conn limit_conn_status limit_req_dry_run limit_conn_dry_run "
                  "auth_request auth_request_set secure_link secure_link_md5 "
                  "secure_link_secret",
    "LimitsConf": "client_max_body_size client_body_timeout client_header_timeout "
                  "client_header_buffer_size large_client_header_buffers keepalive_timeout "
                  "keepalive_header keepalive_requests send_timeout server_tokens "
                  "merge_slashes underscores_in_headers ignore_invalid_headers "
                  "absolute_redirect port_in_redirect server_name_in_redirect "
                  "chunked_transfer_encoding recursive_error_pages",
    "LoggingConf": "access_logs error_log",
    "RealIpConf": "set_real_ip_from header recursive",
}


def test_per_level_settings_are_known_to_the_lane_review() -> None:
    now = {name: " ".join(f.name for f in dataclasses.fields(getattr(m, name)))
           for name in SNAPSHOT}
    changed = {k: (SNAPSHOT[k], now[k]) for k in SNAPSHOT if SNAPSHOT[k].split() != now[k].split()}
    assert not changed, (
        "the model's per-level settings changed; check proxy/lane.py and proxy/fastpath.py "
        f"(module docstring): {changed}")
