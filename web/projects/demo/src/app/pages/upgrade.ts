import { Component, computed, inject, input } from '@angular/core';
import { Router, RouterLink } from '@angular/router';
import { DevTokenSource } from '@tierguard/angular';
import { ApiError } from '../api-error';
import { getJson } from '../api';

interface Plan {
  tier: string;
  price: number;
  includes: string[];
}

/** UpgradePage says which plan a denied page needs, from the guard's query. */
@Component({
  selector: 'app-upgrade',
  imports: [ApiError, RouterLink],
  template: `
    <section data-testid="page-upgrade">
      <h1>Upgrade</h1>
      <p class="notice" data-testid="upgrade-message">{{ message() }}</p>
      @if (required_tier() && dev.session()) {
        <p>
          <button type="button" data-testid="upgrade-switch" (click)="switchPlan()">
            Switch to {{ required_tier() }} (dev issuer)
          </button>
        </p>
      }
      @let s = plans();
      @if (s.status === 'ok') {
        <div class="plans" data-testid="upgrade-plans">
          @for (p of s.data.plans; track p.tier) {
            <div class="plan" [class.wanted]="p.tier === required_tier()"
                 [attr.data-testid]="'plan-' + p.tier">
              <h3>{{ p.tier }}</h3>
              <p class="price">{{ p.price === 0 ? 'free' : '$' + p.price + '/month' }}</p>
              <ul>
                @for (i of p.includes; track i) {
                  <li>{{ i }}</li>
                }
              </ul>
            </div>
          }
        </div>
      }
      <app-api-error [state]="s" />
      <p><a routerLink="/">Back home</a></p>
    </section>
  `,
})
export class UpgradePage {
  readonly required_tier = input<string>();
  readonly reason = input<string>();
  readonly return_url = input<string>();

  protected readonly dev = inject(DevTokenSource);
  private readonly router = inject(Router);
  protected readonly plans = getJson<{ plans: Plan[] }>('/api/plans');

  protected readonly message = computed(() => {
    const tier = this.required_tier();
    if (tier) {
      return `This page needs the ${tier} plan.`;
    }
    const reason = this.reason();
    if (reason) {
      return `This page is not available to you (${reason}).`;
    }
    return 'Pick the plan that suits you.';
  });

  async switchPlan(): Promise<void> {
    const s = this.dev.session();
    const tier = this.required_tier();
    if (!s || !tier) {
      return;
    }
    await this.dev.login(s.sub, tier);
    const back = this.return_url();
    await this.router.navigateByUrl(back && back.startsWith('/') && !back.startsWith('//') ? back : '/');
  }
}
