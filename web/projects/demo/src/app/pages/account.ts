import { Component } from '@angular/core';
import { ApiError } from '../api-error';
import { getJson } from '../api';

/** AccountPage shows the profile the API sees for the caller's token. */
@Component({
  selector: 'app-account',
  imports: [ApiError],
  template: `
    <section data-testid="page-account">
      <h1>Account</h1>
      @let s = profile();
      @if (s.status === 'ok') {
        <dl data-testid="account-data">
          <dt>Subject</dt><dd>{{ s.data.sub }}</dd>
          @if (s.data.name) {
            <dt>Name</dt><dd>{{ s.data.name }}</dd>
          }
          <dt>Issuer</dt><dd>{{ s.data.issuer }}</dd>
        </dl>
      }
      <app-api-error [state]="s" />
    </section>
  `,
})
export class AccountPage {
  readonly profile = getJson<{ sub: string; issuer: string; name?: string }>('/api/profile');
}
