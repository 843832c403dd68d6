import { Component } from '@angular/core';
import { ApiError } from '../api-error';
import { getJson } from '../api';

/** PlaylistsPage lists the caller's playlists (free and up). */
@Component({
  selector: 'app-playlists',
  imports: [ApiError],
  template: `
    <section data-testid="page-playlists">
      <h1>Playlists</h1>
      @let s = lists();
      @if (s.status === 'ok') {
        <ul data-testid="playlists-data">
          @for (p of s.data.playlists; track p.id) {
            <li>{{ p.name }} ({{ p.videos.length }} videos)</li>
          }
        </ul>
      }
      <app-api-error [state]="s" />
    </section>
  `,
})
export class PlaylistsPage {
  readonly lists = getJson<{ playlists: { id: string; name: string; videos: string[] }[] }>(
    '/api/playlists',
  );
}
