import { Component, input } from '@angular/core';
import { ApiState } from './api';

/** ApiError shows a failed API call in a way a test can find. */
@Component({
  selector: 'app-api-error',
  template: `
    @let s = state();
    @if (s.status === 'error') {
      <p class="error" data-testid="page-error">
        The API answered {{ s.code }}{{ s.reason ? ' (' + s.reason + ')' : '' }}.
        @if (s.requiredTier) {
          It needs the {{ s.requiredTier }} plan.
        }
      </p>
    } @else if (s.status === 'loading') {
      <p class="muted" data-testid="loading">Loading…</p>
    }
  `,
})
export class ApiError {
  readonly state = input.required<ApiState<unknown>>();
}
