print("shelcaster-composer")
