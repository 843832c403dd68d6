import { HttpClient, HttpContext } from '@angular/common/http';
import { inject, Injectable, signal } from '@angular/core';
import { firstValueFrom, Subject } from 'rxjs';
import { endpoint, TIERGUARD_CONFIG, TIERGUARD_SKIP } from './config';
import { TokenSource } from './types';

/** DevSession is what the dev token source keeps in sessionStorage. */
export interface DevSession {
  sub: string;
  /** The tier the tokens were minted for; the policy's route map is the authority. */
  tier: string;
  accessToken: string;
  idToken: string | null;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
}

const STORAGE_KEY = 'tierguard.dev.session';

/**
 * DevTokenSource signs in against the dev issuer of `tierguard serve --dev`
 * (POST /dev/token mints tokens for any subject and tier) and keeps the
 * tokens in sessionStorage. For demos and local development only: the dev
 * issuer exists only on a loopback address, and the tokens it mints are
 * refused by a service that trusts a real issuer.
 *
 * Use it with `tokens: () => inject(DevTokenSource)`.
 */
@Injectable({ providedIn: 'root' })
export class DevTokenSource implements TokenSource {
  private readonly http = inject(HttpClient);
  private readonly cfg = inject(TIERGUARD_CONFIG);
  private readonly changed = new Subject<void>();
  private readonly state = signal<DevSession | null>(load());

  /** The current session, or null when signed out. */
  readonly session = this.state.asReadonly();

  readonly changes = this.changed.asObservable();

  /** login asks the dev issuer for tokens of the given subject and tier. */
  async login(sub: string, tier: string): Promise<DevSession> {
    const res = await firstValueFrom(
      this.http.post<{ access_token: string; id_token?: string; expires_in: number }>(
        endpoint(this.cfg, '/dev/token'),
        { sub, tier },
        { context: new HttpContext().set(TIERGUARD_SKIP, true) },
      ),
    );
    const s: DevSession = {
      sub,
      tier,
      accessToken: res.access_token,
      idToken: res.id_token ?? null,
      expiresAt: Date.now() + res.expires_in * 1000,
    };
    this.save(s);
    return s;
  }

  /** logout forgets the tokens. */
  logout(): void {
    this.save(null);
  }

  async accessToken(): Promise<string | null> {
    return this.live()?.accessToken ?? null;
  }

  async idToken(): Promise<string | null> {
    return this.live()?.idToken ?? null;
  }

  /** live is the session unless it expired: an expired token is a 401 everywhere. */
  private live(): DevSession | null {
    const s = this.state();
    if (s && Date.now() >= s.expiresAt - 5_000) {
      this.save(null);
      return null;
    }
    return s;
  }

  private save(s: DevSession | null): void {
    try {
      if (s) {
        sessionStorage.setItem(STORAGE_KEY, JSON.stringify(s));
      } else {
        sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch {
      // No storage (private mode, SSR): the session lives in memory only.
    }
    this.state.set(s);
    this.changed.next();
  }
}

function load(): DevSession | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as DevSession) : null;
  } catch {
    return null;
  }
}
