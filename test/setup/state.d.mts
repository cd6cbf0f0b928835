export declare const SHARED_POSTGRES_STATE: string
export declare function stopShared (): Promise<void>
