import { Component, inject, input, signal } from '@angular/core';
import { FormsModule } from '@angular/forms';
import { Router } from '@angular/router';
import { DevTokenSource } from '@tierguard/angular';

/**
 * LoginPage signs in against the dev issuer of `tierguard serve --dev`,
 * with a tier picker. With Okta this page would call
 * `oktaAuth.signInWithRedirect({originalUri: returnUrl})` instead.
 */
@Component({
  selector: 'app-login',
  imports: [FormsModule],
  template: `
    <section data-testid="page-login">
      <h1>Sign in</h1>
      @if (reason() === 'unauthenticated') {
        <p class="notice" data-testid="login-reason">
          Sign in to open {{ return_url() }}@if (required_tier()) {
            <span> (it needs the {{ required_tier() }} plan)</span>
          }.
        </p>
      } @else if (reason()) {
        <p class="notice" data-testid="login-reason">Your session ended ({{ reason() }}); sign in again.</p>
      }
      @if (dev.session(); as s) {
        <p data-testid="login-current">Signed in as {{ s.sub }} ({{ s.tier }}).</p>
      }
      <form data-testid="login-form" (submit)="$event.preventDefault()">
        <label>
          Name
          <input name="sub" data-testid="login-name" [(ngModel)]="sub" required />
        </label>
        <p>Pick a plan (the dev issuer mints a token with this tier):</p>
        <div class="tiers">
          @for (t of tiers; track t) {
            <button type="button" [attr.data-testid]="'login-as-' + t" [disabled]="busy()"
                    (click)="login(t)">
              {{ t }}
            </button>
          }
        </div>
      </form>
      @if (error()) {
        <p class="error" data-testid="login-error">{{ error() }}</p>
      }
    </section>
  `,
})
export class LoginPage {
  // Query parameters the guard sets.
  readonly return_url = input<string>();
  readonly required_tier = input<string>();
  readonly reason = input<string>();

  protected readonly dev = inject(DevTokenSource);
  private readonly router = inject(Router);
  protected readonly tiers = ['free', 'plus', 'pro'];
  protected sub = this.dev.session()?.sub ?? 'ann';
  protected readonly busy = signal(false);
  protected readonly error = signal('');

  async login(tier: string): Promise<void> {
    this.busy.set(true);
    this.error.set('');
    try {
      await this.dev.login(this.sub.trim() || 'ann', tier);
      await this.router.navigateByUrl(safeReturn(this.return_url()));
    } catch {
      this.error.set('The dev issuer did not answer: is `tierguard serve --dev` running?');
    } finally {
      this.busy.set(false);
    }
  }
}

/** safeReturn keeps the return URL inside the app. */
function safeReturn(url: string | undefined): string {
  return url && url.startsWith('/') && !url.startsWith('//') ? url : '/';
}
