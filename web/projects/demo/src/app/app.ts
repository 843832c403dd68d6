import { Component, computed, inject } from '@angular/core';
import { Router, RouterLink, RouterLinkActive, RouterOutlet } from '@angular/router';
import { DevTokenSource, TierguardService } from '@tierguard/angular';

interface NavLink {
  path: string;
  label: string;
}

/**
 * App is the shell: the navigation marks each page the caller's tier cannot
 * open with the plan it needs, read from the service's route map.
 */
@Component({
  selector: 'app-root',
  imports: [RouterOutlet, RouterLink, RouterLinkActive],
  template: `
    <header>
      <a class="brand" routerLink="/">tierguard <span>demo</span></a>
      <nav>
        @for (l of links; track l.path) {
          <a [routerLink]="l.path" routerLinkActive="active" [routerLinkActiveOptions]="{ exact: l.path === '/' }"
             [attr.data-testid]="'nav-' + (l.path === '/' ? 'home' : l.path.slice(1))">
            {{ l.label }}
            @if (locks()[l.path]; as tier) {
              <span class="lock" title="needs the {{ tier }} plan">{{ tier }}</span>
            }
          </a>
        }
      </nav>
      <div class="who">
        <span class="tier" data-testid="tier-badge">{{ tg.tier() ?? '…' }}</span>
        @if (dev.session(); as s) {
          <span data-testid="who">{{ s.sub }}</span>
          <button type="button" data-testid="logout" (click)="logout()">Sign out</button>
        } @else {
          <a routerLink="/login" data-testid="nav-login">Sign in</a>
        }
      </div>
    </header>
    <main>
      <router-outlet />
    </main>
    <footer>
      policy revision <code data-testid="revision">{{ tg.routeMap()?.revision ?? '…' }}</code>
    </footer>
  `,
})
export class App {
  protected readonly tg = inject(TierguardService);
  protected readonly dev = inject(DevTokenSource);
  private readonly router = inject(Router);

  protected readonly links: NavLink[] = [
    { path: '/', label: 'Home' },
    { path: '/videos', label: 'Videos' },
    { path: '/playlists', label: 'Playlists' },
    { path: '/protected-content', label: 'Treasure map' },
    { path: '/account', label: 'Account' },
    { path: '/admin', label: 'Admin' },
  ];

  /** The required tier of every nav link the caller cannot open. */
  protected readonly locks = computed(() => {
    const routes = this.tg.routeMap()?.routes ?? {};
    const out: Record<string, string> = {};
    for (const l of this.links) {
      const r = routes[l.path];
      if (r && !r.allow) {
        out[l.path] = r.required_tier ?? 'closed';
      }
    }
    return out;
  });

  constructor() {
    this.tg.routes().catch(() => undefined);
  }

  async logout(): Promise<void> {
    this.dev.logout();
    await this.router.navigateByUrl('/');
  }
}
