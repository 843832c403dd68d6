import { HttpClient, HttpErrorResponse, HttpHeaders, HttpResponse } from '@angular/common/http';
import { computed, DestroyRef, inject, Injectable, signal } from '@angular/core';
import { firstValueFrom } from 'rxjs';
import { endpoint, TIERGUARD_CONFIG, TIERGUARD_TOKENS } from './config';
import { Check, Decision, RouteMap } from './types';

/** MAX_BATCH is the most checks the service accepts in one /authz/check call. */
export const MAX_BATCH = 100;

/** The reason of a decision the client could not get from the service. */
export const REASON_UNAVAILABLE = 'service_unavailable';

interface Pending {
  check: Check;
  resolve: (d: Decision) => void;
}

interface Cached {
  key: string | null;
  body: RouteMap;
  etag: string | null;
  /** Epoch ms after which the body must be revalidated. */
  validUntil: number;
  /** How long the service let the last body live, reused after a 304. */
  ttl: number;
}

/**
 * TierguardService asks the tierguard service what the current user may
 * reach. It keeps one route map per token and policy revision (body and
 * ETag, revalidated with If-None-Match) and folds the checks asked within
 * one tick into a single POST /authz/check.
 *
 * Every failure is a deny: a check that could not be asked resolves to
 * `{allow: false, reason: 'service_unavailable'}`, or to the problem's
 * reason code (`token_expired`) when the service answered with one.
 */
@Injectable({ providedIn: 'root' })
export class TierguardService {
  private readonly http = inject(HttpClient);
  private readonly cfg = inject(TIERGUARD_CONFIG);
  private readonly tokens = inject(TIERGUARD_TOKENS);

  private readonly map = signal<RouteMap | null>(null);

  /** The route map for the current tokens, or null until it is loaded. */
  readonly routeMap = this.map.asReadonly();

  /** The caller's tier as the policy computed it (`anonymous`, `free`, ...). */
  readonly tier = computed(() => this.map()?.tier ?? null);

  private cached: Cached | null = null;
  private loading: { key: string | null; epoch: number; promise: Promise<RouteMap> } | null = null;
  /** Bumped whenever the cached map may be out of date. */
  private epoch = 0;
  private fresh = -1;
  /** Bumped when the tokens change; a load from before is not published. */
  private generation = 0;

  private queue: Pending[] = [];

  constructor() {
    const sub = this.tokens.changes.subscribe(() => void this.tokensChanged());
    inject(DestroyRef).onDestroy(() => sub.unsubscribe());
  }

  /**
   * routes resolves to the route map for the current tokens: from memory
   * while it is fresh, else from GET /authz/routes, revalidated with the
   * ETag it came with.
   */
  async routes(): Promise<RouteMap> {
    const key = await this.tokens.accessToken();
    const c = this.cached;
    if (c && c.key === key && this.fresh === this.epoch && Date.now() < c.validUntil) {
      return c.body;
    }
    if (this.loading && this.loading.key === key && this.loading.epoch === this.epoch) {
      return this.loading.promise;
    }
    const epoch = this.epoch;
    const promise = this.fetchRoutes(key, epoch).finally(() => {
      if (this.loading?.promise === promise) {
        this.loading = null;
      }
    });
    this.loading = { key, epoch, promise };
    return promise;
  }

  /**
   * check asks one question. Checks asked in the same tick travel together
   * as one batch, answered in one policy evaluation.
   */
  check(check: Check): Promise<Decision> {
    return new Promise((resolve) => {
      this.queue.push({ check, resolve });
      if (this.queue.length === 1) {
        queueMicrotask(() => this.flush());
      }
    });
  }

  /**
   * feature answers for one feature from the route map; a feature the map
   * does not list is asked with a (batched) check.
   */
  async feature(name: string): Promise<Decision> {
    let map: RouteMap | null = null;
    try {
      map = await this.routes();
    } catch {
      // Fall through to the check, which fails closed on its own.
    }
    const f = map?.features[name];
    return f ? { ...f } : this.check({ kind: 'feature', name });
  }

  /**
   * refresh marks the route map stale and, when one was loaded, revalidates
   * it now. The interceptor calls it on a 403 that carries a tierguard
   * reason: the page and the API disagreed, so the map was out of date.
   */
  refresh(): void {
    this.epoch++;
    if (this.map()) {
      this.routes().catch(() => undefined);
    }
  }

  /**
   * noteRevision is told the policy revision a response was decided
   * under; a revision other than the map's reloads the map.
   */
  noteRevision(revision: string): void {
    const current = this.map();
    if (!current || current.revision === revision) {
      return;
    }
    this.epoch++;
    this.routes().catch(() => undefined);
  }

  private async tokensChanged(): Promise<void> {
    const key = await this.tokens.accessToken();
    if (this.cached && this.cached.key === key) {
      return; // a renewal event that left the token as it was
    }
    this.generation++;
    this.epoch++;
    const had = this.map() !== null || this.loading !== null;
    this.map.set(null);
    this.cached = null;
    if (had) {
      this.routes().catch(() => undefined);
    }
  }

  private async fetchRoutes(key: string | null, epoch: number): Promise<RouteMap> {
    const generation = this.generation;
    const prior = this.cached && this.cached.key === key ? this.cached : null;
    let headers = new HttpHeaders();
    if (prior?.etag) {
      headers = headers.set('If-None-Match', prior.etag);
    }

    let res: HttpResponse<RouteMap> | null = null;
    try {
      res = await firstValueFrom(
        this.http.get<RouteMap>(endpoint(this.cfg, '/authz/routes'), {
          headers,
          observe: 'response',
        }),
      );
    } catch (err) {
      // HttpClient reports 304 as an error: the body we hold is still good.
      if (!(err instanceof HttpErrorResponse && err.status === 304 && prior)) {
        throw err;
      }
    }

    let next: Cached;
    if (res && res.status !== 304 && res.body) {
      const validUntil = expiry(res.body.expires_at);
      next = {
        key,
        body: res.body,
        etag: res.headers.get('ETag'),
        validUntil,
        ttl: Math.max(0, validUntil - Date.now()),
      };
    } else if (prior) {
      next = { ...prior, validUntil: Date.now() + prior.ttl };
    } else {
      throw new Error('tierguard: /authz/routes answered without a body');
    }

    // Publish only what is still news: not a map for tokens since replaced,
    // nor one older than a map a later load already published.
    if (generation !== this.generation || epoch < this.fresh) {
      return next.body;
    }
    this.cached = next;
    this.fresh = epoch;
    this.map.set(next.body);
    return next.body;
  }

  private async flush(): Promise<void> {
    const batch = this.queue.splice(0, MAX_BATCH);
    if (this.queue.length > 0) {
      queueMicrotask(() => this.flush());
    }
    if (batch.length === 0) {
      return;
    }

    let decisions: Decision[];
    try {
      const res = await firstValueFrom(
        this.http.post<{ revision: string; decisions: Decision[] }>(
          endpoint(this.cfg, '/authz/check'),
          { checks: batch.map((p) => p.check) },
        ),
      );
      decisions = res.decisions;
    } catch (err) {
      const deny = denyFrom(err);
      decisions = batch.map(() => deny);
    }
    batch.forEach((p, i) => p.resolve(decisions[i] ?? denyFrom(null)));
  }
}

/** denyFrom turns a failed call into a deny, keeping a problem's reason. */
export function denyFrom(err: unknown): Decision {
  const body = err instanceof HttpErrorResponse ? err.error : null;
  const reason = typeof body?.reason === 'string' ? body.reason : REASON_UNAVAILABLE;
  const tier = typeof body?.required_tier === 'string' ? body.required_tier : null;
  return { allow: false, reason, required_tier: tier };
}

function expiry(expiresAt: string | undefined): number {
  const t = expiresAt ? Date.parse(expiresAt) : NaN;
  return Number.isFinite(t) ? t : Date.now() + 60_000;
}
