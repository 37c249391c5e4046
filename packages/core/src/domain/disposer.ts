/** Undoes a registration (a listener, a subscription). Calling it more than once does nothing more. */
export type Disposer = () => void;
