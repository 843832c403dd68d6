import { Component } from '@angular/core';
import { RouterLink } from '@angular/router';
import { ApiError } from '../api-error';
import { getJson } from '../api';

/** HomePage is public: anyone on the internet may read the news. */
@Component({
  selector: 'app-home',
  imports: [ApiError, RouterLink],
  template: `
    <section data-testid="page-home">
      <h1>Welcome aboard</h1>
      <p>
        A video site with a secret: signed-in <strong>plus</strong> members can open the
        <a routerLink="/protected-content">treasure map</a>.
      </p>
      @let s = news();
      @if (s.status === 'ok') {
        <ul data-testid="home-news">
          @for (item of s.data.news; track item) {
            <li>{{ item }}</li>
          }
        </ul>
      }
      <app-api-error [state]="s" />
    </section>
  `,
})
export class HomePage {
  readonly news = getJson<{ news: string[] }>('/api/news');
}
