import { Component } from '@angular/core';
import { RouterLink } from '@angular/router';

@Component({
  selector: 'app-not-found',
  imports: [RouterLink],
  template: `
    <section data-testid="page-not-found">
      <h1>Not found</h1>
      <p><a routerLink="/">Back home</a></p>
    </section>
  `,
})
export class NotFoundPage {}
