import { Component } from '@angular/core';
import { ApiError } from '../api-error';
import { getJson } from '../api';

/** AdminPage is for pro: the numbers come from two pro-only API routes. */
@Component({
  selector: 'app-admin',
  imports: [ApiError],
  template: `
    <section data-testid="page-admin">
      <h1>Admin</h1>
      @let a = admin();
      @let v = analytics();
      @if (a.status === 'ok' && v.status === 'ok') {
        <div data-testid="admin-data">
          <p>{{ a.data.users }} users</p>
          <ul>
            @for (t of tiers(a.data.by_tier); track t[0]) {
              <li>{{ t[0] }}: {{ t[1] }}</li>
            }
          </ul>
          <p>Views, last 7 days: {{ v.data.views_last_7_days.join(', ') }}</p>
        </div>
      }
      <app-api-error [state]="a" />
      <app-api-error [state]="v" />
    </section>
  `,
})
export class AdminPage {
  readonly admin = getJson<{ users: number; by_tier: Record<string, number> }>('/api/admin');
  readonly analytics = getJson<{ views_last_7_days: number[] }>('/api/analytics');

  tiers(byTier: Record<string, number>): [string, number][] {
    return Object.entries(byTier);
  }
}
