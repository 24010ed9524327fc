"""The console's Starlette app: login, role checks, CSRF, and the views.

Roles (docs/console.md):

- coordinator: the case list and case pages;
- compliance: case pages, the log (filtered by anything) and its verification;
- auditor: the log's verification and the unfiltered log (pseudonymous), never a
  case page nor the log filtered to one case (personal data).

Every view of personal data (a case page, the log filtered to a case) is written
to the access log before it is shown.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode
from zoneinfo import ZoneInfo

import jinja2
import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sigbus.audit.errors import AuditError
from sigbus.audit.extract import LogSigner, build_extract
from sigbus.audit.review import Period, Verdict, anomalies, sample
from sigbus.audit.signed_chain import ChainError
from sigbus.console.auth import (
    SESSION_COOKIE,
    Role,
    Session,
    Sessions,
    Throttle,
    UsersFile,
    load_secret,
)
from sigbus.console.extract import (
    ExtractCache,
    Kept,
    about_person,
    checkpoint_summary,
    extract_pdf,
    extract_rows,
)
from sigbus.console.i18n import DEFAULT_LANG, LANGS, t
from sigbus.console.records import MAX_NOTE, AccessLog, FindingsLog, RecordsError
from sigbus.console.shaping import (
    FilterError,
    commitment_rows,
    consent_rows,
    filter_entries,
    known_bases,
    lifecycle_view,
    meeting_rows,
    parse_filter,
    readable_basis,
    rows,
)
from sigbus.console.source import NatsSource, Source
from sigbus.policy.rules import Rules, default_rules
from sigbus.protocol.personnummer import PersonnummerError, contains_personnummer_pattern

log = structlog.get_logger("sigbus.console")

LOGIN_CSRF_COOKIE = "sigbus_console_login"
LANG_COOKIE = "sigbus_console_lang"
RECENT_DECISIONS = 20
MAX_FORM = 4096

CASE_ROLES = frozenset({Role.COORDINATOR, Role.COMPLIANCE})
LOG_ROLES = frozenset({Role.COMPLIANCE, Role.AUDITOR})
CASE_LOG_ROLES = frozenset({Role.COMPLIANCE})
EXTRACT_ROLES = frozenset({Role.COMPLIANCE})
REVIEW_ROLES = frozenset({Role.COMPLIANCE})
ACCESS_ROLES = frozenset({Role.COMPLIANCE})
#: Office hours, weekends and the review's default period are Swedish local time.
REVIEW_TZ = ZoneInfo("Europe/Stockholm")
DEFAULT_SAMPLE = 10
MAX_SAMPLE = 200

#: Served from /console.css: the pages' Content-Security-Policy allows no inline style.
STYLESHEET = (resources.files("sigbus.console") / "templates" / "console.css").read_text()

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("sigbus.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass
class Console:
    users: UsersFile
    sessions: Sessions
    source: Source
    access: AccessLog
    rules: Rules
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    throttle: Throttle = field(default_factory=Throttle)
    #: The hub's pseudonym key, to find a person's entries for an extract (None: no extracts).
    pseudonym_key: bytes | None = None
    extracts: ExtractCache = field(default_factory=ExtractCache)
    findings: FindingsLog | None = None
    #: The hub's log key, to sign an extract's completeness statement (None: no extracts).
    log_signer: LogSigner | None = None


def _lang(request: Request) -> str:
    wanted = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    return wanted if wanted in LANGS else DEFAULT_LANG


def _page(
    request: Request,
    template: str,
    *,
    session: Session | None,
    status: int = 200,
    **values: Any,
) -> HTMLResponse:
    lang = _lang(request)
    other = "en" if lang == "sv" else "sv"
    params = {k: v for k, v in request.query_params.items() if k != "lang"}
    toggle = f"{request.url.path}?{urlencode({**params, 'lang': other})}"
    html = _env.get_template(template).render(
        t=lambda key: t(key, lang), lang=lang, toggle=toggle, session=session, **values
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = "default-src 'self'; form-action 'self'"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="strict")
    return response


def _set_session(console: Console, response: Response, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        console.sessions.issue(session),
        max_age=console.sessions.idle_s,
        httponly=True,
        samesite="strict",
    )


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


Handler = Callable[[Request, Console, Session], Awaitable[Response]]


def _guarded(
    console: Console, roles: frozenset[Role], handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        session = console.sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return RedirectResponse("/login", status_code=303)
        if request.method == "POST":
            form = await _form(request)
            if not secrets.compare_digest(form.get("csrf", ""), session.csrf):
                return _page(request, "error.html", session=session, status=403, message="csrf")
        if session.role not in roles:
            log.warning(
                "console_refused", user=session.user, role=session.role.value, path=request.url.path
            )
            return _page(request, "error.html", session=session, status=403, message="forbidden")
        try:
            response = await handler(request, console, session)
        except RecordsError as e:
            # The view is not shown unless its access record is on the hub (fail closed).
            log.error("console_record_failed", user=session.user, error=str(e))
            return _page(request, "error.html", session=session, status=503, message="records")
        _set_session(console, response, session)  # sliding idle expiry
        return response

    return endpoint


async def login_form(
    request: Request, console: Console, error: bool = False, status: int | None = None
) -> Response:
    token = secrets.token_urlsafe(24)
    response = _page(
        request,
        "login.html",
        session=None,
        csrf=token,
        error=error,
        status=status or (401 if error else 200),
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=900, httponly=True, samesite="strict")
    return response


def make_app(console: Console) -> Starlette:
    async def login_get(request: Request) -> Response:
        return await login_form(request, console)

    async def login_post(request: Request) -> Response:
        form = await _form(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(form.get("csrf", ""), expected):
            return _page(request, "error.html", session=None, status=403, message="csrf")
        name, now = form.get("username", ""), console.clock().timestamp()
        if console.throttle.blocked(name, now):
            log.warning("console_login_throttled")
            return await login_form(request, console, error=True, status=429)
        user = console.users.load().get(name)
        if user is None or not user.check(form.get("password", "")):
            console.throttle.failed(name, now)
            log.warning("console_login_failed")
            return await login_form(request, console, error=True)
        console.throttle.succeeded(name)
        log.info("console_login", user=user.name, role=user.role.value)
        response = RedirectResponse("/", status_code=303)
        _set_session(console, response, console.sessions.new(user))
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    async def logout(request: Request, console: Console, session: Session) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def home(request: Request, console: Console, session: Session) -> Response:
        target = "/cases" if session.role in CASE_ROLES else "/log"
        return RedirectResponse(target, status_code=303)

    async def cases(request: Request, console: Console, session: Session) -> Response:
        snap = await console.source.snapshot()
        listed = [
            {"ref": c.case_ref, "parties": ", ".join(sorted(c.parties))}
            for c in sorted(snap.cases.values(), key=lambda c: c.case_ref)
        ]
        return _page(request, "cases.html", session=session, cases=listed)

    async def case(request: Request, console: Console, session: Session) -> Response:
        ref = request.path_params["ref"]
        snap = await console.source.snapshot()
        record = snap.cases.get(ref)
        if record is None:
            return _page(request, "error.html", session=session, status=404, message="not_found")
        now = console.clock()
        await console.access.record(
            user=session.user,
            role=session.role.value,
            view="case",
            case_ref=ref,
            at=now,
        )
        lang = _lang(request)
        decisions = [
            e
            for e in snap.entries
            if e.get("case_ref") == ref and e["outcome"] in ("release", "deny")
        ][-RECENT_DECISIONS:]
        return _page(
            request,
            "case.html",
            session=session,
            ref=ref,
            parties=sorted(record.parties),
            consents=consent_rows(record.events, lang),
            lifecycle=lifecycle_view(record, console.rules, now, lang),
            plan_version=record.plan_version,
            commitments=commitment_rows(record, now, lang),
            meetings=meeting_rows(snap.entries, ref, lang),
            decisions=rows(list(reversed(decisions)), console.rules, lang),
        )

    async def log_view(request: Request, console: Console, session: Session) -> Response:
        snap = await console.source.snapshot()
        bases = known_bases(console.rules, snap.entries)
        agencies = sorted(
            {
                *snap.agencies,
                *(a for e in snap.entries for a in (e.get("sender"), e.get("recipient")) if a),
            }
        )
        params = dict(request.query_params)
        try:
            f = parse_filter(params, agencies=agencies, bases=bases)
        except FilterError as e:
            return _page(
                request,
                "error.html",
                session=session,
                status=400,
                message="bad_filter",
                detail=e.field,
            )
        if f.case is not None:
            if session.role not in CASE_LOG_ROLES:
                return _page(
                    request, "error.html", session=session, status=403, message="forbidden"
                )
            await console.access.record(
                user=session.user,
                role=session.role.value,
                view="log",
                case_ref=f.case,
                at=console.clock(),
            )
        lang = _lang(request)
        matched = filter_entries(snap.entries, f)
        return _page(
            request,
            "log.html",
            session=session,
            f=f,
            agencies=agencies,
            bases=sorted((b, readable_basis(b, console.rules, lang)) for b in bases),
            outcomes=["release", "deny", "recorded", "retraction", "shredded"],
            rows=rows(matched, console.rules, lang),
            total=len(snap.entries),
            can_filter_case=session.role in CASE_LOG_ROLES,
        )

    async def stylesheet(request: Request) -> Response:
        return Response(
            STYLESHEET, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
        )

    async def status(request: Request, console: Console, session: Session) -> Response:
        snap = await console.source.snapshot()
        return _page(request, "status.html", session=session, s=snap.status)

    async def extract_form(request: Request, console: Console, session: Session) -> Response:
        return _page(request, "extract_form.html", session=session, error=None)

    async def extract_post(request: Request, console: Console, session: Session) -> Response:
        form = await _form(request)
        if console.pseudonym_key is None or console.log_signer is None:
            return _page(
                request,
                "extract_form.html",
                session=session,
                status=503,
                error="extract_unavailable",
            )
        personnummer = form.get("personnummer", "").strip()
        try:
            about_person(personnummer, console.pseudonym_key)  # refused before the hub is read
        except PersonnummerError:
            log.info("console_extract_refused", user=session.user, reason="bad_personnummer")
            return _page(
                request, "extract_form.html", session=session, status=400, error="bad_personnummer"
            )
        snap = await console.source.snapshot()
        if snap.note is None or snap.log_key is None:
            return _page(
                request,
                "extract_form.html",
                session=session,
                status=503,
                error="extract_unavailable",
            )
        try:
            extract = build_extract(
                snap.note,
                snap.leaves,
                snap.cosignatures,
                log_key=snap.log_key,
                # The case records too: the hub's own denies in a case name no subject.
                is_about=about_person(personnummer, console.pseudonym_key, snap.cases),
                signer=console.log_signer,
            )
        except AuditError as e:
            log.error("console_extract_failed", user=session.user, error=str(e))
            return _page(
                request, "extract_form.html", session=session, status=503, error="extract_failed"
            )
        scopes = tuple(sorted({x.entry.case_ref or x.entry.message_id for x in extract.lines}))
        token = console.extracts.put(Kept(session.user, extract, console.clock(), scopes))
        log.info("console_extract", user=session.user, lines=len(extract.lines), size=extract.size)
        return RedirectResponse(f"/extract/{token}", status_code=303)

    async def _kept(request: Request, console: Console, session: Session, view: str) -> Kept | None:
        kept = console.extracts.get(request.path_params["token"], session.user, console.clock())
        if kept is not None:
            await console.access.record(
                user=session.user,
                role=session.role.value,
                view=view,
                case_ref=",".join(kept.case_refs) or "-",
                at=console.clock(),
            )
        return kept

    async def extract_view(request: Request, console: Console, session: Session) -> Response:
        kept = await _kept(request, console, session, "extract")
        if kept is None:
            return _page(
                request, "error.html", session=session, status=404, message="expired_extract"
            )
        size, root = checkpoint_summary(kept.extract)
        return _page(
            request,
            "extract.html",
            session=session,
            token=request.path_params["token"],
            rows=extract_rows(kept.extract, console.rules, _lang(request)),
            size=size,
            root=root,
            origin=kept.extract.origin,
            checkpoint=kept.extract.checkpoint,
            produced_at=kept.produced_at.strftime("%Y-%m-%d %H:%M %Z"),
        )

    async def extract_download(request: Request, console: Console, session: Session) -> Response:
        kind = request.path_params["kind"]
        if kind not in ("pdf", "json"):
            return _page(request, "error.html", session=session, status=404, message="not_found")
        kept = await _kept(request, console, session, f"extract_{kind}")
        if kept is None:
            return _page(
                request, "error.html", session=session, status=404, message="expired_extract"
            )
        headers = {
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="registerutdrag.{kind}"',
        }
        if kind == "pdf":
            # fpdf2 lays out ~100 lines a second: off the event loop, so other pages go on.
            body = await run_in_threadpool(
                extract_pdf, kept.extract, console.rules, _lang(request), kept.produced_at
            )
            return Response(body, media_type="application/pdf", headers=headers)
        return Response(kept.extract.to_json(), media_type="application/json", headers=headers)

    def _review_params(console: Console, values: Mapping[str, str]) -> tuple[Period, int, str]:
        """The period (default: the last seven days), sample size and seed; raises
        :class:`FilterError` naming a bad field."""
        today = console.clock().astimezone(REVIEW_TZ).date()
        days: dict[str, date] = {}
        for key, default in (("since", today - timedelta(days=6)), ("until", today)):
            raw = (values.get(key) or "").strip()
            try:
                days[key] = date.fromisoformat(raw) if raw else default
            except ValueError as e:
                raise FilterError(key) from e
        raw_size = (values.get("size") or "").strip()
        if raw_size and not (raw_size.isdigit() and 1 <= int(raw_size) <= MAX_SAMPLE):
            raise FilterError("size")
        seed = (values.get("seed") or "").strip() or f"{days['since']}/{days['until']}"
        if len(seed) > 100:
            raise FilterError("seed")
        return Period(days["since"], days["until"]), int(raw_size or DEFAULT_SAMPLE), seed

    async def review(request: Request, console: Console, session: Session) -> Response:
        try:
            period, size, seed = _review_params(console, dict(request.query_params))
        except FilterError as e:
            return _page(
                request,
                "error.html",
                session=session,
                status=400,
                message="bad_filter",
                detail=e.field,
            )
        return await _review_page(request, console, session, period, size, seed)

    async def _review_page(
        request: Request,
        console: Console,
        session: Session,
        period: Period,
        size: int,
        seed: str,
        status: int = 200,
        error: str | None = None,
    ) -> Response:
        snap = await console.source.snapshot()
        by_index = {int(e["index"]): e for e in snap.entries}
        chosen = sample(snap.entries, period, size, seed)
        parties = {ref: c.parties for ref, c in snap.cases.items()}
        found = anomalies(snap.entries, period, parties, REVIEW_TZ)
        await console.access.record(
            user=session.user,
            role=session.role.value,
            view="review",
            case_ref="-",
            at=console.clock(),
        )
        lang = _lang(request)
        findings = await console.findings.read() if console.findings else []
        try:
            head = await console.findings.head() if console.findings else None
        except ChainError:
            head, error = None, "chain_broken"
        return _page(
            request,
            "review.html",
            session=session,
            status=status,
            error=error,
            since=period.since.isoformat(),
            until=period.until.isoformat(),
            size=size,
            seed=seed,
            sample_rows=rows([by_index[i] for i in chosen], console.rules, lang),
            anomaly_rows=[
                (t("rule_" + a.rule.value, lang), a.agency, r)
                for a in found
                for r in rows([by_index[a.index]], console.rules, lang)
            ],
            findings=list(reversed(findings)),
            head=head,
            verdicts=[v.value for v in Verdict],
            max_note=MAX_NOTE,
        )

    async def record_finding(request: Request, console: Console, session: Session) -> Response:
        form = await _form(request)
        try:
            period, size, seed = _review_params(console, form)
        except FilterError as e:
            return _page(
                request,
                "error.html",
                session=session,
                status=400,
                message="bad_filter",
                detail=e.field,
            )
        snap = await console.source.snapshot()
        known = {int(e["index"]) for e in snap.entries}
        raw_index, note = form.get("index", "").strip(), form.get("note", "").strip()
        verdict = form.get("verdict", "")
        if (
            console.findings is None
            or not raw_index.isdigit()
            or int(raw_index) not in known
            or verdict not in {v.value for v in Verdict}
            or len(note) > MAX_NOTE
            or contains_personnummer_pattern(note)
        ):
            log.info("console_finding_refused", user=session.user)
            return await _review_page(
                request, console, session, period, size, seed, status=400, error="bad_finding"
            )
        index = int(raw_index)
        rules_hit = sorted(
            a.rule.value
            for a in anomalies(
                snap.entries, period, {r: c.parties for r, c in snap.cases.items()}, REVIEW_TZ
            )
            if a.index == index
        )
        try:
            record = await console.findings.append(
                {
                    "at": console.clock().isoformat(),
                    "user": session.user,
                    "role": session.role.value,
                    "entry_index": index,
                    "verdict": verdict,
                    "note": note,
                    "period": f"{period.since}/{period.until}",
                    "seed": seed,
                    "sampled": index in sample(snap.entries, period, size, seed),
                    "rules": rules_hit,
                }
            )
        except (ChainError, RecordsError):
            return await _review_page(
                request, console, session, period, size, seed, status=409, error="chain_broken"
            )
        log.info(
            "console_finding",
            user=session.user,
            entry_index=index,
            verdict=verdict,
            seq=record["seq"],
        )
        query = urlencode(
            {"since": period.since, "until": period.until, "size": size, "seed": seed}
        )
        return RedirectResponse(f"/review?{query}", status_code=303)

    async def access_view(request: Request, console: Console, session: Session) -> Response:
        # Itself a view of who looked at which case: recorded like the others.
        await console.access.record(
            user=session.user,
            role=session.role.value,
            view="access_log",
            case_ref="-",
            at=console.clock(),
        )
        records = await console.access.read()
        error, head = None, None
        try:
            head = await console.access.head()
        except ChainError as e:
            log.error("console_access_chain_broken", position=e.position)
            error = "access_broken"
        return _page(
            request,
            "access.html",
            session=session,
            records=list(reversed(records)),
            head=head,
            error=error,
        )

    async def extract_help(request: Request, console: Console, session: Session) -> Response:
        return _page(request, "extract_help.html", session=session)

    return Starlette(
        routes=[
            Route("/console.css", stylesheet, methods=["GET"]),
            Route("/login", login_get, methods=["GET"]),
            Route("/login", login_post, methods=["POST"]),
            Route("/logout", _guarded(console, frozenset(Role), logout), methods=["POST"]),
            Route("/", _guarded(console, frozenset(Role), home)),
            Route("/cases", _guarded(console, CASE_ROLES, cases)),
            Route("/cases/{ref}", _guarded(console, CASE_ROLES, case)),
            Route("/log", _guarded(console, LOG_ROLES, log_view)),
            Route("/status", _guarded(console, LOG_ROLES, status)),
            Route("/extract", _guarded(console, EXTRACT_ROLES, extract_form), methods=["GET"]),
            Route("/extract", _guarded(console, EXTRACT_ROLES, extract_post), methods=["POST"]),
            Route("/review", _guarded(console, REVIEW_ROLES, review), methods=["GET"]),
            Route(
                "/review/findings",
                _guarded(console, REVIEW_ROLES, record_finding),
                methods=["POST"],
            ),
            Route("/access", _guarded(console, ACCESS_ROLES, access_view)),
            Route("/extract-help", _guarded(console, frozenset(Role), extract_help)),
            Route("/extract/{token}", _guarded(console, EXTRACT_ROLES, extract_view)),
            Route("/extract/{token}/{kind}", _guarded(console, EXTRACT_ROLES, extract_download)),
        ]
    )


def console_for(data_dir: Path, source: NatsSource, rules: Rules | None = None) -> Console:
    """The served console: its users and session secret in ``data_dir``, its access log
    and findings in the hub's streams, signed with the hub's signing key."""
    return Console(
        pseudonym_key=source.pseudonym_key,
        log_signer=source.log_signer,
        findings=source.findings_log(),
        users=UsersFile(data_dir / "console-users.json"),
        sessions=Sessions(load_secret(data_dir / "console-secret")),
        source=source,
        access=source.access_log(),
        rules=rules or default_rules(),
    )
