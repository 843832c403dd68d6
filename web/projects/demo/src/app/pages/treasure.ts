import { Component } from '@angular/core';
import { ApiError } from '../api-error';
import { getJson } from '../api';

/** TreasurePage is the story's protected page: the map comes from the API. */
@Component({
  selector: 'app-treasure',
  imports: [ApiError],
  template: `
    <section data-testid="page-treasure">
      @let s = map();
      @if (s.status === 'ok') {
        <h1 data-testid="treasure-title">{{ s.data.title }}</h1>
        <ol class="map" data-testid="treasure-map">
          @for (step of s.data.map; track step) {
            <li>{{ step }}</li>
          }
        </ol>
      } @else {
        <h1>The treasure map</h1>
      }
      <app-api-error [state]="s" />
    </section>
  `,
})
export class TreasurePage {
  readonly map = getJson<{ title: string; map: string[] }>('/api/treasure-map');
}
