if __name__ == "__main__":  # not when a worker process of --executor local imports it
    from smu.cli import main

    main()
